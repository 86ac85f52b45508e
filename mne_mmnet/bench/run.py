"""The benchmark loop (Table I of the MM-Net paper)."""

import time

import numpy as np
from mne.utils import _validate_type, logger, verbose

from ..metrics import (
    DEFAULT_ORDER,
    METRIC_NAMES,
    evaluate,
    global_localization_error,
    summarize,
)
from .methods import DEFAULT_METHODS, list_methods, make_method


@verbose
def run_benchmark(
    sim,
    fwd,
    adjacency,
    *,
    methods=DEFAULT_METHODS,
    method_options=None,
    order=DEFAULT_ORDER,
    batch_size=50,
    progress=True,
    verbose=None,
):
    """Run methods on a simulated test set and score them.

    Parameters
    ----------
    sim : mne_mmnet.simulation.Simulation
        Test set (``eeg``, ``sources``, ``seeds``, ``patch_masks``, ``sfreq``).
    fwd : mne.Forward
        The forward model used to simulate ``sim``.
    adjacency : scipy.sparse array
        Source adjacency graph (for the localisation error).
    methods : sequence of str
        Registered method names (see :func:`list_methods`).
    method_options : dict of str to dict | None
        Per-method keyword arguments overriding the registered defaults.
    order : int
        Neighbourhood order of the localisation error (see
        :func:`mne_mmnet.metrics.evaluate`).
    batch_size : int
        Samples passed to a solver at once.
    progress : bool
        Show a tqdm progress bar per method.
    verbose : bool | str | int | None
        Control verbosity of the logging output (see :func:`mne.verbose`).

    Returns
    -------
    results : dict
        ``{"n_samples", "sfreq", "order", "methods": {name: {...}}}``; each method
        entry holds ``metrics`` (means), ``std`` (standard deviations over
        samples), ``n_valid`` (samples where each metric is defined),
        ``runtime_per_sample_s`` (solver time only), ``setup_s`` (factory time),
        ``settings`` and ``description``; ``scores`` holds the per-sample arrays.

    Notes
    -----
    Every method receives the same EEG (not re-referenced: each method applies
    the average reference itself) and is scored against the same ground truth,
    with the simulation's patch masks as the AUC labels.
    """
    methods, method_options, registry = _check_run_arguments(
        methods, method_options, batch_size
    )
    n = len(sim)
    if n < 1:
        raise ValueError("The test set sim is empty; it needs at least one sample.")
    positions = np.asarray(fwd["source_rr"])
    out = dict(n_samples=n, sfreq=float(sim.sfreq), order=order, methods={})
    for name in methods:
        t0 = time.perf_counter()
        solver = make_method(name, fwd, **method_options.get(name, {}))
        setup = time.perf_counter() - t0
        logger.info(f"{name}: set up in {setup:.2f} s")
        scores, solve_time = _score_method(
            name, solver, sim, positions, adjacency, order=order,
            batch_size=batch_size, progress=progress,
        )  # fmt: skip
        out["methods"][name] = dict(
            description=registry[name].description,
            metrics=summarize(scores),
            std={k: float(np.nanstd(v)) for k, v in scores.items()},
            n_valid={k: int(np.sum(~np.isnan(v))) for k, v in scores.items()},
            runtime_per_sample_s=solve_time / n,
            setup_s=setup,
            settings=_jsonable(getattr(solver, "settings", {})),
            scores=scores,
        )
    return out


def _check_run_arguments(methods, method_options, batch_size):
    """Validate the arguments; return the methods, their options and the registry."""
    _validate_type(batch_size, "int", "batch_size")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if isinstance(methods, str):
        raise TypeError(
            f"methods must be a sequence of method names, got the string "
            f"{methods!r}; pass [{methods!r}] for one method."
        )
    methods = list(methods)
    duplicated = sorted({m for m in methods if methods.count(m) > 1})
    if duplicated:
        raise ValueError(f"methods must be distinct, got {duplicated} more than once.")
    _validate_type(method_options, (dict, None), "method_options")
    method_options = {} if method_options is None else dict(method_options)
    registry = list_methods()
    unknown = [m for m in methods if m not in registry]
    if unknown:
        raise ValueError(
            f"Unknown benchmark method(s) {unknown}; registered: {sorted(registry)}."
        )
    unused = sorted(set(method_options) - set(methods))
    if unused:
        raise ValueError(
            f"method_options has entries for {unused}, which are not in methods "
            f"{methods}; check the names."
        )
    return methods, method_options, registry


def _score_method(
    name, solver, sim, positions, adjacency, *, order, batch_size, progress
):
    """Run ``solver`` on ``sim`` in batches; return its scores and solver time.

    The scores are per-sample arrays of every metric; the time counts the
    solver calls only.
    """
    from tqdm.auto import tqdm

    n = len(sim)
    keys = (*METRIC_NAMES, "global_localization_error")
    scores = {key: [] for key in keys}
    solve_time = 0.0
    with tqdm(total=n, desc=name, unit="sample", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            sl = slice(start, min(start + batch_size, n))
            t0 = time.perf_counter()
            estimate = np.asarray(solver(sim.eeg[sl], sfreq=sim.sfreq))
            solve_time += time.perf_counter() - t0
            batch = _score_batch(estimate, sim, sl, positions, adjacency, order)
            for key in keys:
                scores[key].append(batch[key])
            bar.update(sl.stop - sl.start)
    return {key: np.concatenate(value) for key, value in scores.items()}, solve_time


def _score_batch(estimate, sim, sl, positions, adjacency, order):
    """Metrics of the estimates of the samples ``sl`` of ``sim``."""
    batch = evaluate(
        estimate,
        sim.sources[sl],
        seeds=sim.seeds[sl],
        positions=positions,
        adjacency=adjacency,
        sfreq=sim.sfreq,
        order=order,
        active=sim.patch_masks[sl],
        verbose=False,
    )
    batch["global_localization_error"] = global_localization_error(
        estimate, sim.sources[sl], seeds=sim.seeds[sl], positions=positions
    )
    return batch


def _jsonable(obj):
    """Best-effort conversion of settings to JSON-friendly types."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return repr(obj)
