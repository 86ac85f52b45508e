"""Benchmark methods: the registry and the built-in rows (classical and learned)."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mne.utils import _validate_type


@dataclass
class MethodSpec:
    """A benchmark method: a factory turning a forward model into a solver.

    Attributes
    ----------
    name : str
        Row label in the tables.
    factory : callable
        ``factory(fwd, **options) -> solver``; ``solver(eeg, *, sfreq)`` maps
        EEG ``(n, n_channels, n_times)`` to sources ``(n, n_sources, n_times)``
        and may expose a ``settings`` dict that is copied into the results.
    description : str
        One line for ``--list`` and the results file.
    options : dict
        Default keyword arguments passed to ``factory``.
    """

    name: str
    factory: object
    description: str = ""
    options: dict = field(default_factory=dict)


_REGISTRY = {}


def register_method(name, factory, *, description="", overwrite=False, **options):
    """Add a method to the benchmark registry.

    Parameters
    ----------
    name : str
        Name used on the command line and as the table row (e.g. ``"MM-Net"``).
    factory : callable
        ``factory(fwd, **options) -> solver`` where ``solver(eeg, *, sfreq)``
        returns an ndarray ``(n_samples, n_sources, n_times)``. The factory is
        called once per benchmark run, so expensive set-up (an inverse operator,
        loading network weights) belongs there.
    description : str
        Short description.
    overwrite : bool
        Replace an existing entry of the same name instead of raising.
    **options
        Default keyword arguments for ``factory``.

    Raises
    ------
    TypeError
        If ``name`` is not a string or ``factory`` is not callable.
    ValueError
        If ``name`` is empty, holds a comma or is ``"all"``, or is taken and
        ``overwrite`` is False.
    """
    _validate_type(name, str, "name")
    if "," in name or not name.strip() or name.strip() == "all":
        raise ValueError(
            f"name must be non-empty, free of commas (the command line splits "
            f"--methods on them) and not 'all' (the command line's word for every "
            f"method), got {name!r}."
        )
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}.")
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"A benchmark method named {name!r} exists; pass overwrite=True to "
            "replace it."
        )
    _REGISTRY[name] = MethodSpec(name, factory, description, dict(options))


def list_methods():
    """Return the registered methods.

    Returns
    -------
    methods : dict of str to mne_mmnet.bench.MethodSpec
        A copy of the registry, in registration order.
    """
    _register_builtins()
    return dict(_REGISTRY)


def make_method(name, fwd, **options):
    """Build the solver of a registered method for a forward model.

    Parameters
    ----------
    name : str
        A registered method name (see :func:`list_methods`).
    fwd : mne.Forward
        The forward model.
    **options
        Override the method's default options.

    Returns
    -------
    solver : callable
        ``solver(eeg, *, sfreq) -> sources``.
    """
    methods = list_methods()
    if name not in methods:
        raise ValueError(
            f"Unknown benchmark method {name!r}; registered: {sorted(methods)}."
        )
    spec = methods[name]
    return spec.factory(fwd, **{**spec.options, **options})


# --------------------------------------------------------------------- built-ins
def _minimum_norm_factory(fwd, *, method, **options):
    from ..baselines import make_minimum_norm_solver

    return make_minimum_norm_solver(fwd, method, verbose=False, **options)


def _classical_mm_factory(fwd, **options):
    from ..baselines import make_classical_mm_solver

    return make_classical_mm_solver(fwd, **options)


def _mmnet_factory(
    fwd, *, model, n_iter=None, projection=True, guarantee=None, device="cpu", seed=0
):
    """Batch solver running a (pretrained) MM-Net exactly as apply_mmnet_inverse.

    ``projection=False`` runs the same weights without the clipping to the
    bound; ``guarantee`` overrides the model's (e.g. ``"certified"``).
    """
    import copy

    from ..inverse._operator import MMNetInverse, _resolve_model
    from ..inverse._run import _run
    from ..problem import average_projector, average_reference
    from ..utils import _get_device

    device = _get_device(device)
    net = _resolve_model(model, device)
    if not projection:  # same weights, no clipping to the bound (R-MM-Net-like)
        net = copy.deepcopy(net)
        net.bound = None
    if guarantee is not None:
        net = copy.deepcopy(net)
        net.guarantee = guarantee
    gain = np.asarray(fwd["sol"]["data"], np.float64)
    n_ch = gain.shape[0]
    average = average_projector(n_ch)  # average reference, data and gain alike
    inv = MMNetInverse(
        net=net, ch_names=fwd["sol"]["row_names"], proj=average,
        leadfield=average @ gain, vertices=[s["vertno"] for s in fwd["src"]],
        subject=fwd["src"]._subject, device=device, reference="average",
        model_name=str(model),
    )  # fmt: skip

    def solver(eeg, *, sfreq=None):
        y = np.asarray(eeg, np.float64)
        y = average_reference(y, 1)
        sources, _ = _run(inv, y, n_iter=n_iter, seed=seed, batch_size=len(y))
        return sources.astype(np.float32)

    solver.settings = dict(
        model=str(model),
        n_parameters=net.n_parameters,
        n_iter=net.n_iter if n_iter is None else n_iter,
        bound=net.bound,
        step=net.step,
        init=net.init,
        guarantee=net.guarantee,
        training=getattr(net, "metadata", {}).get("training", None),
    )
    return solver


def _learned_factory(fwd, *, path, n_iter=None, device="cpu", batch_size=16, seed=0):
    """Batch solver running a saved learned baseline (or any LearnedSolver).

    ``seed`` seeds the start of models with ``init="random"`` (as the MM-Net
    rows do); the linear starts ignore it.
    """
    import torch

    from ..pretrained import load_model
    from ..problem import average_reference, restore_scale
    from ..utils import _get_device

    device = _get_device(device)
    net = load_model(path, device=device, verbose=False)
    L = average_reference(np.asarray(fwd["sol"]["data"], np.float64), 0)
    L_t = torch.as_tensor(L, dtype=torch.float32, device=device)

    def solver(eeg, *, sfreq=None):
        y = average_reference(np.asarray(eeg, np.float64), 1)
        out = []
        with torch.no_grad():
            for start in range(0, len(y), batch_size):
                y_t = torch.as_tensor(
                    y[start : start + batch_size], dtype=torch.float32, device=device
                )
                out.append(net(y_t, L_t, n_iter=n_iter, seed=seed).cpu().numpy())
        x = np.concatenate(out).astype(np.float64)
        return restore_scale(x, L, y).astype(np.float32)

    solver.settings = dict(
        model=str(path),
        architecture=net.architecture,
        n_parameters=net.n_parameters,
        n_iter=net.n_iter if n_iter is None else n_iter,
        init=net.init,
        fixed_n_times=net.fixed_n_times,
        training=getattr(net, "metadata", {}).get("train_args", None),
    )
    return solver


#: file-name prefix of a saved learned baseline -> row label
BASELINE_LABELS = {
    "4dvarnet": "4DVarNet",
    "meta-curvature": "Meta-Curvature",
    "modgrad": "ModGrad",
    "optenet": "OPTEnet",
    "eunet": "EUnet",
}


def register_learned_baselines(directory):
    """Register the learned baselines saved in a folder as benchmark rows.

    Parameters
    ----------
    directory : path-like
        Folder with files ``<method>-<domain>.pt`` written by
        ``tools/train_baselines.sh`` (or :func:`mne_mmnet.save_model`), with
        ``<method>`` one of ``4dvarnet``, ``meta-curvature``, ``modgrad``,
        ``optenet``, ``eunet``.

    Returns
    -------
    names : list of str
        The registered row labels, e.g. ``"4DVarNet (sereega)"``.
    """
    _validate_type(directory, "path-like", "directory")
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"No folder {directory} of learned baselines.")
    _register_builtins()  # keep the classical and MM-Net rows first
    names = []
    for fname, label, domain in _baseline_files(directory):
        name = f"{label} ({domain})"
        register_method(
            name,
            _learned_factory,
            description=f"{label} trained on {domain} ({fname.name})",
            overwrite=True,
            path=str(fname),
        )
        names.append(name)
    if not names:
        raise ValueError(
            f"No learned baselines (<method>-<domain>.pt with <method> in "
            f"{sorted(BASELINE_LABELS)}) in {directory}."
        )
    return names


def _baseline_files(directory):
    """List ``(file, label, domain)`` of a folder's ``<method>-<domain>.pt``.

    In the paper's order of methods, then by domain.
    """
    files = sorted(Path(directory).glob("*.pt"))
    return [
        (fname, label, fname.stem[len(prefix) + 1 :])
        for prefix, label in BASELINE_LABELS.items()
        for fname in files
        if fname.stem.startswith(prefix + "-") and fname.stem != prefix + "-"
    ]


_BUILTINS_DONE = []


def _register_builtins():
    if _BUILTINS_DONE:
        return
    _register_classical_rows()
    from ..pretrained import shipped_models

    for name in shipped_models():
        _register_pretrained_rows(name)
    _BUILTINS_DONE.append(True)  # only once every built-in row is in


def _register_missing(name, factory, description, **options):
    """Register a built-in row unless a row of that name is already in."""
    if name not in _REGISTRY:
        register_method(name, factory, description=description, **options)


def _register_classical_rows():
    """Register the minimum-norm family and the classical (unlearned) MM."""
    descriptions = {
        "MNE": "minimum-norm estimate",
        "dSPM": "noise-normalised MNE (dSPM)",
        "sLORETA": "standardised low-resolution tomography",
        "eLORETA": "exact low-resolution tomography",
    }
    for method, text in descriptions.items():
        _register_missing(
            method,
            _minimum_norm_factory,
            f"{text}, mne.minimum_norm, fixed, lambda2 = 1/9",
            method=method,
        )
    _register_missing(
        "classical MM (sLORETA start)",
        _classical_mm_factory,
        "cosine data energy, analytic bound, directional step, "
        "10 iterations from sLORETA; no learned parts",
    )
    _register_missing(
        "classical MM (random start)",
        _classical_mm_factory,
        "cosine data energy, analytic bound, diagonal step, "
        "10 iterations from 1e-3 N(0, 1) (the paper's start)",
        init="random",
        step="diagonal",
    )


def _register_pretrained_rows(name):
    """Register the rows of the shipped model ``name``.

    R-MM-Net for an ``-unprojected`` model; otherwise MM-Net and its
    inference-time variants (projection off, certified steps).
    """
    if name.endswith("-unprojected"):
        _register_missing(
            f"R-MM-Net ({name.removesuffix('-unprojected')})",
            _mmnet_factory,
            f"pretrained '{name}': MM-Net trained and run "
            "without projection or descent safeguard (R-MM-Net)",
            model=name,
        )
        return
    _register_missing(
        f"MM-Net ({name})",
        _mmnet_factory,
        f"pretrained MM-Net '{name}', projected MM steps",
        model=name,
    )
    _register_missing(
        f"MM-Net ({name}; projection off)",
        _mmnet_factory,
        f"pretrained MM-Net '{name}' run without the "
        "projection onto the curvature bound (inference-time ablation)",
        model=name,
        projection=False,
    )
    _register_missing(
        f"MM-Net ({name}; certified)",
        _mmnet_factory,
        f"pretrained MM-Net '{name}' with "
        "guarantee='certified' (every step cut to its majorant's minimiser)",
        model=name,
        guarantee="certified",
    )


#: Methods run when none are named.
DEFAULT_METHODS = (
    "MNE",
    "dSPM",
    "sLORETA",
    "eLORETA",
    "classical MM (sLORETA start)",
    "classical MM (random start)",
)
