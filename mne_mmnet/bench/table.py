"""Table I-style markdown and JSON output of a benchmark run."""

import json
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from mne.utils import _check_option, _validate_type

#: Table I of the MM-Net paper (v2): LE mm, AUC %, nMSE, PSNR dB, TE.
PAPER_TABLE_I = {
    "sereega": {
        "MNE": (21.06, 82.05, 0.02, 21.85, 2.72),
        "sLORETA": (14.82, 86.75, 0.05, 18.29, 1.57),
        "Meta-Curvature": (10.22, 97.86, 0.01, 27.90, 0.72),
        "ModGrad": (28.68, 69.12, 0.06, 21.54, 1.60),
        "4DVarNet": (9.17, 99.52, 0.01, 30.35, 1.04),
        "R-MM-Net": (4.07, 99.86, 0.00, 37.81, 0.85),
        "MM-Net": (3.92, 99.90, 0.00, 38.74, 0.79),
    },
    "nmm": {
        "MNE": (19.15, 77.36, 0.02, 29.81, 185.00),
        "sLORETA": (14.67, 79.18, 0.04, 26.46, 165.36),
        "Meta-Curvature": (17.58, 84.08, 0.02, 30.39, 170.12),
        "ModGrad": (38.03, 64.32, 0.02, 29.15, 196.32),
        "4DVarNet": (15.13, 80.32, 0.01, 32.68, 166.24),
        "R-MM-Net": (10.33, 81.14, 0.01, 35.72, 142.56),
        "MM-Net": (9.98, 82.41, 0.01, 35.81, 146.24),
    },
}

#: Cross-domain rows of Table I: the models trained on the *other* data set.
PAPER_TABLE_I_CROSS = {
    "sereega": {  # trained on NMM
        "4DVarNet": (20.68, 92.74, 0.02, 22.99, 1.62),
        "R-MM-Net": (17.88, 92.67, 0.01, 25.13, 1.55),
        "MM-Net": (16.74, 92.87, 0.01, 25.64, 1.47),
    },
    "nmm": {  # trained on SEREEGA
        "4DVarNet": (14.40, 74.97, 0.02, 30.23, 156.44),
        "R-MM-Net": (14.20, 74.47, 0.01, 33.25, 138.78),
        "MM-Net": (12.48, 75.03, 0.01, 33.72, 133.44),
    },
}

#: Parameter counts (millions) of the paper's learned models, per test set.
PAPER_PARAMS = {
    "sereega": {"Meta-Curvature": 1.80, "ModGrad": 1.34},
    "nmm": {"Meta-Curvature": 2.05, "ModGrad": 7.11},
    "any": {"4DVarNet": 3.01, "R-MM-Net": 2.95, "MM-Net": 2.95},
}


def _paper_row(name, kind):
    """Look up the paper's ``(params, metrics)`` for a row label, or None.

    ``"sLORETA"`` is looked up as is; ``"<Method> (<training set>)"`` in the
    within-domain block when the training set is ``kind`` and in the
    cross-domain block otherwise. Variants (``"...; projection off"``) have no
    counterpart in the paper.
    """
    if kind is None:
        return None
    method, _, rest = name.partition(" (")
    domain = rest.rstrip(")") if rest else None
    if domain is None:
        metrics = PAPER_TABLE_I[kind].get(method)
    elif domain == kind:
        metrics = PAPER_TABLE_I[kind].get(method)
    elif domain in PAPER_TABLE_I:
        metrics = PAPER_TABLE_I_CROSS[kind].get(method)
    else:
        metrics = None
    if metrics is None:
        return None
    params = PAPER_PARAMS.get(domain or kind, {}).get(method)
    params = PAPER_PARAMS["any"].get(method) if params is None else params
    return params, metrics


# (metric key, column title, scale, decimals)
_COLUMNS = (
    ("localization_error", "LE (mm) ↓", 1.0, 2),
    ("auc", "AUC (%) ↑", 100.0, 2),
    ("nmse", "nMSE ↓", 1.0, 3),
    ("psnr", "PSNR (dB) ↑", 1.0, 2),
    ("time_error", "TE (ms) ↓", 1.0, 2),
)


def _fmt(value, decimals):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if np.isinf(value):
        return "∞"
    return f"{value:.{decimals}f}"


def format_table(results, *, kind=None):
    """Format benchmark results as a markdown table next to the paper's values.

    Parameters
    ----------
    results : dict
        Output of :func:`mne_mmnet.bench.run_benchmark` (or the JSON file).
    kind : ``"sereega"`` | ``"nmm"`` | None
        Which block of the paper's Table I to show in parentheses; ``None``
        shows none.

    Returns
    -------
    table : str
        Markdown: one row per method, the learned parameters (millions), each
        metric as ``ours (paper)``, then the solver time per sample. A learned
        row ``"<Method> (<training set>)"`` is compared with the paper's
        within-domain row when it was trained on ``kind`` and with its
        cross-domain row otherwise.
    """
    _validate_type(results, dict, "results")
    if kind is not None:
        _check_option("kind", kind, tuple(PAPER_TABLE_I))
    head = [
        "Method",
        "Params (M)",
        *(title for _, title, _, _ in _COLUMNS),
        "time / sample (ms)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, entry in results["methods"].items():
        paper = _paper_row(name, kind)
        n_params = entry.get("settings", {}).get("n_parameters")
        cell = "–" if n_params is None else f"{n_params / 1e6:.2f}"
        if paper is not None and paper[0] is not None:
            cell += f" ({paper[0]:.2f})"
        row = [name, cell]
        for i, (key, _, scale, decimals) in enumerate(_COLUMNS):
            cell = _fmt(entry["metrics"][key] * scale, decimals)
            if paper is not None:
                cell += f" ({_fmt(paper[1][i], 2)})"
            row.append(cell)
        row.append(f"{1e3 * entry['runtime_per_sample_s']:.3g}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _versions():
    import importlib

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for mod in ("mne_mmnet", "mne", "numpy", "scipy", "torch"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except ImportError:  # pragma: no cover
            out[mod] = None
    return out


def write_results(
    results,
    out_dir,
    *,
    tag,
    dataset=None,
    kind=None,
    scores=False,
    append=False,
    command=None,
):
    """Write ``table_<tag>.md`` and ``results_<tag>.json`` under ``out_dir``.

    Parameters
    ----------
    results : dict
        Output of :func:`mne_mmnet.bench.run_benchmark`.
    out_dir : path-like
        Output folder (created if needed).
    tag : str
        File-name suffix, e.g. ``"sereega"``.
    dataset : dict | None
        Description of the test set (kind, seed, SNR, ...) stored in the JSON
        and summarised above the table.
    kind : ``"sereega"`` | ``"nmm"`` | None
        Which block of the paper's Table I to show beside ours.
    scores : bool
        Also write the per-sample scores to ``scores_<tag>.npz``.
    append : bool
        Keep the rows of an existing ``results_<tag>.json`` (methods run now
        replace rows of the same name). The existing file must describe the same
        test set (``dataset`` and neighbourhood order), otherwise this raises.
    command : str | None
        The command line that produced the results (stored in the JSON).

    Returns
    -------
    paths : dict of str to Path
        ``{"table": ..., "json": ...}`` (and ``"scores"``).
    """
    _validate_type(results, dict, "results")
    _validate_type(tag, str, "tag")
    if kind is not None:
        _check_option("kind", kind, tuple(PAPER_TABLE_I))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = {} if dataset is None else dict(dataset)
    summary = {k: v for k, v in results.items() if k != "methods"}
    methods = {
        name: {k: v for k, v in entry.items() if k != "scores"}
        for name, entry in results["methods"].items()
    }
    payload = dict(
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command=command,
        dataset=dataset,
        **summary,
        units=dict(
            localization_error="mm",
            auc="fraction",
            nmse="1",
            psnr="dB",
            time_error="ms",
            runtime_per_sample_s="s",
        ),  # fmt: skip
        methods=methods,
        paper_table_i=None if kind is None else PAPER_TABLE_I[kind],
        versions=_versions(),
    )
    paths = dict(
        table=out_dir / f"table_{tag}.md", json=out_dir / f"results_{tag}.json"
    )
    if append and paths["json"].exists():
        payload["methods"], results = _merge(paths["json"], payload, methods, results)
    paths["json"].write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    described = ", ".join(
        f"{k}={v}" for k, v in dataset.items() if not isinstance(v, dict)
    )
    header = (
        f"# Benchmark: {tag}\n\n{results['n_samples']} test samples"
        + (f" ({described})" if described else "")
        + f"; LE neighbourhood order {results['order']}. Values: ours"
        + (" (paper's Table I)" if kind is not None else "")
        + ".\n\n"
    )
    paths["table"].write_text(header + format_table(results, kind=kind))
    if scores:
        paths["scores"] = out_dir / f"scores_{tag}.npz"
        arrays = {}
        if append and paths["scores"].exists():
            with np.load(paths["scores"]) as npz:
                arrays = {k: npz[k] for k in npz.files}
        arrays.update(
            {
                f"{name}__{key}": value
                for name, entry in results["methods"].items()
                if "scores" in entry
                for key, value in entry["scores"].items()
            }
        )
        np.savez_compressed(paths["scores"], **arrays)
    return paths


#: how a test set was stored, not which samples it holds: ignored on --append
_STORAGE_KEYS = ("source", "dtype")


def _comparable(before, now):
    """Drop the storage details (folder, storage dtype) from two set records.

    The same test set regenerated elsewhere, or by a newer simulator that
    also records its storage dtype, is still the same set; every other
    parameter must match, and one recorded by only one side is a difference.
    """

    def keep(record):
        return {k: v for k, v in record.items() if k not in _STORAGE_KEYS}

    return keep(before), keep(now)


def check_appendable(out_dir, tag, *, dataset, order, n_samples):
    """Raise before a run whose rows could not be appended to ``results_<tag>.json``.

    Parameters
    ----------
    out_dir : path-like
        Output folder of :func:`write_results`.
    tag : str
        File-name suffix.
    dataset : dict
        Description of this run's test set.
    order : int
        Neighbourhood order of the localisation error.
    n_samples : int
        Test samples of this run.

    Raises
    ------
    ValueError
        If the file exists and describes another test set.
    """
    fname = Path(out_dir) / f"results_{tag}.json"
    if fname.exists():
        new = dict(dataset=dict(dataset), order=order, n_samples=int(n_samples))
        _check_same_set(fname, json.loads(fname.read_text()), new)


def _check_same_set(fname, old, payload):
    """Raise unless ``old`` (a results file) and ``payload`` hold the same set."""
    new = json.loads(json.dumps(payload, default=str))
    for key in ("dataset", "order", "n_samples"):
        before, now = old.get(key), new.get(key)
        if key == "dataset" and isinstance(before, dict) and isinstance(now, dict):
            # the same test set regenerated elsewhere: its parameters decide
            before, now = _comparable(before, now)
        if before != now:
            raise ValueError(
                f"Cannot append to {fname}: its {key} ({old.get(key)}) differs from "
                f"this run's ({payload.get(key)}); use another tag."
            )


def _merge(fname, payload, methods, results):
    """Merge the rows of an earlier results file (same test set) before ours."""
    old = json.loads(Path(fname).read_text())
    _check_same_set(fname, old, payload)
    merged = {k: v for k, v in old["methods"].items() if k not in methods}
    merged.update(methods)
    rows = {k: v for k, v in old["methods"].items() if k not in methods}
    rows.update(results["methods"])
    return merged, dict(results, methods=rows)
