"""Public MM solver: validated wrapper around :func:`mm_iterations`."""

import copy

import numpy as np
import torch
from mne.utils import _check_option, _validate_type, logger, verbose

from ..utils import _get_device, _get_dtype, _torch_generator
from .linear import INITS, initial_estimate
from .mm import mm_iterations
from .objective import _sq_norm


def _as_tensor(value, name, device, dtype):
    """Convert numpy/torch input to a tensor on ``device`` with ``dtype``."""
    _validate_type(value, (np.ndarray, torch.Tensor), name)
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not value.is_floating_point():
        raise ValueError(f"{name} must hold floating-point values, got {value.dtype}.")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return value.to(device=device, dtype=dtype)


def _prepare_module(module, device, dtype):
    """Return ``module`` on ``device``/``dtype`` without touching the caller's."""
    if not isinstance(module, torch.nn.Module):
        return module
    params = list(module.parameters()) + list(module.buffers())
    if all(p.device == device and p.dtype == dtype for p in params):
        return module
    return copy.deepcopy(module).to(device=device, dtype=dtype)


@verbose
def solve_mm(
    y,
    L,
    *,
    model=None,
    prior=None,
    n_iter=None,
    gamma=None,
    bound="auto",
    step=None,
    init=None,
    guarantee=None,
    x0=None,
    lam=None,
    device=None,
    seed=None,
    dtype="float32",
    return_trace=False,
    verbose=None,
):
    """Solve the MM-Net source imaging problem with (learned) MM iterations.

    The solver of :footcite:t:`TranEtAl2026`.

    Parameters
    ----------
    y : array | torch.Tensor, shape ([batch, ]n_channels, n_times)
        Sensor data (apply the same reference to ``y`` and ``L``).
    L : array | torch.Tensor, shape (n_channels, n_sources)
        Leadfield.
    model : object | None
        Trained MM-Net-like object with attributes ``prior``, ``curvature``
        and optionally ``lam``. ``None``: classical MM (``p = nu_up``). A
        model's own settings (``n_iter``, ``gamma``, ``bound``, ``step``,
        ``init``, ``guarantee``, ``safeguard``; those of an
        :class:`mne_mmnet.MMNet` are the ones it was trained with) are used
        for every option left at ``None``.
    prior : torch.nn.Module | None
        Autoencoder prior when no ``model`` is given; ``None`` minimises the
        data term only.
    n_iter : int | None
        Number of MM iterations (default: the model's, or 10).
    gamma : float | None
        Relaxation in (0, 2). ``None``: 1.999 for the diagonal step (the
        paper's value) and 1.0 for the directional step, whose length uses the
        local curvature ``d' H d`` (1.999 would jump to the far side of the
        local quadratic, where the energy is about unchanged).
    bound : 'auto' | 'analytic' | 'hvp' | None
        Projection bound: Proposition 1, HVP power iteration (a point
        estimate, not a bound), or ``None`` (no projection: R-MM-Net, needs a
        learned curvature). ``'auto'``: the model's, or ``'analytic'``.
    step : 'diagonal' | 'directional' | None
        Diagonal step ``x - gamma p g``, or a step along ``d = p g`` whose
        length ``(g.d) / (d' H(x) d)`` uses the exact curvature at ``x``
        along ``d`` (:mod:`mne_mmnet.solver.directional`; a Newton step
        along ``d``: no majorant covers it, so it is checked or cut to a
        certified length, see ``guarantee``). ``None``: the model's, or
        ``'diagonal'``.
    init : 'random' | 'mne' | 'sloreta' | 'prior' | 'gated' | None
        Start: ``1e-3 N(0, 1)`` (seeded), a linear inverse, the prior
        applied to the sLORETA estimate, or the model's gated mixture of both
        (see
        :func:`~mne_mmnet.solver.initial_estimate`). ``None``: the model's,
        or ``'random'``.
    guarantee : 'checked' | 'certified' | None
        See :func:`mne_mmnet.solver.mm_iterations`. ``None``: the model's,
        or ``'checked'``.
    x0 : array | torch.Tensor | None
        Explicit start, shaped like the output (it replaces the model's
        ``init``; ``init`` itself can then only be None or ``'random'``).
    lam : float | None
        Prior weight; ``None`` takes ``model.lam`` if present, else 1.
    device : str | torch.device | None
        Where to compute (``None``: CUDA when available).
    seed : None | int | numpy.random.Generator
        Seed of the random start and of the power iterations.
    dtype : 'float32' | 'float64'
    return_trace : bool
        Also return the :class:`~mne_mmnet.solver.MMTrace` (numpy arrays).
    %(verbose)s

    Returns
    -------
    x : array | torch.Tensor, shape ([batch, ]n_sources, n_times)
        Source estimate (unit RMS per sample), same kind (numpy or torch) and
        batching as ``y``.
    trace : MMTrace
        Only with ``return_trace=True``.

    Raises
    ------
    ValueError
        On inconsistent shapes, options or non-finite inputs.

    Notes
    -----
    The energy (eq. 8) is invariant to the scale of ``x`` (the prior is
    evaluated on the unit-RMS rescaling, see
    :func:`mne_mmnet.solver.energy`), so iterates are
    renormalised to unit RMS after every step without changing the energy:
    the descent check and the bounds both refer to that energy. With
    ``bound='analytic'`` and no learned curvature, ``p = nu_up`` is the
    classical step with the (pointwise) bound of Proposition 1. Every step is
    labelled certified, checked or rejected (see
    :attr:`~mne_mmnet.solver.MMTrace.step_labels`): a step that would increase
    the energy is
    rejected for that sample and its multiplier halved (restored by doubling
    after accepted steps), so the energy never increases; only steps under a
    majorant valid on their whole segment count as certified. The one
    exception is a ``model`` whose ``safeguard`` attribute is False (an
    R-MM-Net trained without it, such as the pretrained
    ``"sereega-unprojected"``): its steps are all taken, and the trace counts
    the ones that increased the energy.

    References
    ----------
    .. footbibliography::
    """
    device = _get_device(device)
    dtype = _get_dtype(dtype)
    if x0 is not None and init not in (None, "random"):
        raise ValueError(f"Pass either x0= or init={init!r}, not both.")
    n_iter, gamma, bound, step, init, guarantee = _settings(
        model, n_iter=n_iter, gamma=gamma, bound=bound, step=step, init=init,
        guarantee=guarantee,
    )  # fmt: skip
    parts = _model_parts(model, prior, lam)
    is_numpy = isinstance(y, np.ndarray)
    y_t, L_t, squeeze = _check_problem(y, L, device, dtype)
    prior = _prepare_module(parts["prior"], device, dtype)
    curvature = _prepare_module(parts["curvature"], device, dtype)
    gate = _prepare_module(parts["gate"], device, dtype)
    x_start = _start(
        x0, y_t, L_t, squeeze, init=init, seed=seed, prior=prior, gate=gate
    )
    hvp_seed = None if seed is None else _torch_generator(seed, device)
    x, trace = mm_iterations(
        x_start,
        y_t,
        L_t,
        prior=prior,
        curvature=curvature,
        n_iter=n_iter,
        gamma=gamma,
        bound=bound,
        step=step,
        lam=parts["lam"],
        create_graph=False,
        safeguard=parts["safeguard"],
        guarantee=guarantee,
        seed=hvp_seed,
        **parts["metric"],
    )
    x = x.detach()
    _log_steps(trace, n_iter, parts["safeguard"])
    if squeeze:
        x = x[0]
    if is_numpy:
        x = x.cpu().numpy()
    if return_trace:
        return x, trace.to_numpy()
    return x


def _model_parts(model, prior, lam):
    """Prior, curvature, safeguard, prior weight and step metric of a model."""
    parts = dict(prior=prior, curvature=None, safeguard=True, gate=None)
    # the step metric is part of a trained model, never a user option
    parts["metric"] = dict(
        preconditioner=getattr(model, "preconditioner", "diagonal"),
        preconditioner_reg=getattr(model, "preconditioner_reg", 0.1),
    )
    if model is not None:
        if prior is not None:
            raise ValueError("Pass either model= or prior=, not both.")
        parts["prior"] = getattr(model, "prior", None)
        parts["curvature"] = getattr(model, "curvature", None)
        parts["gate"] = getattr(model, "gate", None)
        # an R-MM-Net trained without the safeguard runs without it
        parts["safeguard"] = bool(getattr(model, "safeguard", True))
        if lam is None:
            lam = getattr(model, "lam", None)
    lam = 1.0 if lam is None else lam
    _validate_type(lam, "numeric", "lam")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}.")
    if parts["prior"] is not None:
        _validate_type(parts["prior"], torch.nn.Module, "prior")
    parts["lam"] = lam
    return parts


def _check_problem(y, L, device, dtype):
    """Return data and leadfield as batched tensors with matching shapes."""
    y_t = _as_tensor(y, "y", device, dtype)
    L_t = _as_tensor(L, "L", device, dtype)
    squeeze = y_t.ndim == 2
    if squeeze:
        y_t = y_t[None]
    if y_t.ndim != 3 or L_t.ndim != 2 or L_t.shape[0] != y_t.shape[1]:
        raise ValueError(
            "y must be (n_channels, n_times) or (batch, n_channels, n_times) and L "
            f"(n_channels, n_sources) with matching n_channels, got y "
            f"{tuple(y_t.shape)} and L {tuple(L_t.shape)}."
        )
    if not bool((_sq_norm(y_t) > 0).all()):
        raise ValueError("y has an all-zero sample; the cosine energy is undefined.")
    return y_t, L_t, squeeze


def _start(x0, y_t, L_t, squeeze, *, init, seed, prior, gate=None):
    """Return the start of the iterations: ``x0`` checked, or ``init``."""
    batch, _, n_times = y_t.shape
    shape = (batch, L_t.shape[1], n_times)
    if x0 is not None:
        x_start = _as_tensor(x0, "x0", y_t.device, y_t.dtype)
        if squeeze and x_start.ndim == 2:
            x_start = x_start[None]
        if tuple(x_start.shape) != shape:
            raise ValueError(f"x0 must have shape {shape}, got {tuple(x_start.shape)}.")
    else:
        with torch.no_grad():
            x_start = initial_estimate(
                y_t, L_t, init=init, seed=seed, prior=prior, gate=gate
            )
    if not bool((_sq_norm(x_start) > 0).all()):
        raise ValueError(
            "The start has an all-zero sample (the linear inverse of that sample "
            "is zero: the data lie in the leadfield's null space, or the "
            "leadfield has all-zero columns for every active source); check y "
            "and L, or pass another x0."
        )
    return x_start


def _log_steps(trace, n_iter, safeguard):
    """One log line: the energy's change and how each step was accepted."""
    labels = trace.step_labels
    logger.info(
        f"MM: {n_iter} iterations, energy {float(trace.total[0].mean()):.4f} -> "
        f"{float(trace.total[-1].mean()):.4f}; steps certified "
        f"{100 * labels['certified']:.1f}%, checked {100 * labels['checked']:.1f}%, "
        + ("rejected " if safeguard else "rising (taken, no safeguard) ")
        + f"{100 * labels['rejected']:.1f}%"
    )


#: settings of :func:`solve_mm` without a model (classical MM, the paper's)
CLASSICAL_DEFAULTS = dict(
    n_iter=10, bound="analytic", step="diagonal", init="random", guarantee="checked"
)


def _settings(model, **given):
    """Solver settings: given values, else the model's, else the classical."""
    out = {}
    given = dict(given)
    if given["bound"] is None:
        given["bound"] = "none"  # no projection, asked for
    elif given["bound"] == "auto":
        given["bound"] = None
    for key, default in CLASSICAL_DEFAULTS.items():
        value = given[key]
        if value is None and model is not None and hasattr(model, key):
            value = getattr(model, key)
            if key == "bound" and value is None:
                value = "none"
        out[key] = default if value is None else value
    _validate_type(out["n_iter"], "int-like", "n_iter")
    if int(out["n_iter"]) < 0:
        raise ValueError(f"n_iter must be >= 0, got {out['n_iter']}.")
    _check_option("init", out["init"], INITS)
    _check_option("bound", out["bound"], ("analytic", "hvp", "none"))
    _check_option("step", out["step"], ("diagonal", "directional"))
    _check_option("guarantee", out["guarantee"], ("checked", "certified"))
    gamma = given["gamma"]
    if gamma is None and model is not None:
        gamma = getattr(model, "gamma", None)
    if gamma is None:
        gamma = 1.0 if out["step"] == "directional" else 1.999
    bound = None if out["bound"] == "none" else out["bound"]
    return (
        int(out["n_iter"]),
        gamma,
        bound,
        out["step"],
        out["init"],
        out["guarantee"],
    )
