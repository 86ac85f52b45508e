"""Learned baselines of the benchmark: the solvers MM-Net is compared with.

Each is a :class:`mne_mmnet.networks.base.LearnedSolver`, so it trains with
:func:`mne_mmnet.train` (``model=<config dict>``), saves and loads with
:func:`mne_mmnet.save_model` / :func:`mne_mmnet.load_model`, and runs in the
benchmark beside MM-Net. They carry no descent guarantee; they are here to be
compared with, not to be used through :func:`mne_mmnet.apply_mmnet_inverse`.
"""

from .embedding import EUnet, OPTEnet
from .gradient import FourDVarNet, MetaCurvatureSolver, ModGradSolver

#: command-line / benchmark name -> class
LEARNED_BASELINES = {
    "4dvarnet": FourDVarNet,
    "meta-curvature": MetaCurvatureSolver,
    "modgrad": ModGradSolver,
    "optenet": OPTEnet,
    "eunet": EUnet,
}


def baseline_config(name, *, n_sources, n_times, prior_hidden=(256, 128), **options):
    """Default config of a learned baseline, sized like the shipped MM-Net.

    Parameters
    ----------
    name : str
        One of the keys of ``LEARNED_BASELINES``: ``"4dvarnet"``,
        ``"meta-curvature"``, ``"modgrad"``, ``"optenet"`` or ``"eunet"``.
    n_sources : int
        Number of sources.
    n_times : int
        Time samples of the training windows (used by the fixed-length
        Meta-Curvature and ModGrad solvers only).
    prior_hidden : tuple of int
        Hidden channels of the autoencoder prior of the gradient solvers
        (MM-Net's family and size).
    **options
        Other constructor arguments (e.g. ``n_iter``, ``init``).

    Returns
    -------
    config : dict
        For :func:`mne_mmnet.architectures.build_model` or
        :func:`mne_mmnet.train` (``model=config``).
    """
    if name not in LEARNED_BASELINES:
        raise ValueError(
            f"Unknown learned baseline {name!r}; known: {sorted(LEARNED_BASELINES)}."
        )
    cls = LEARNED_BASELINES[name]
    kwargs = dict(n_sources=n_sources, **options)
    if name in ("meta-curvature", "modgrad"):
        kwargs["n_times"] = n_times
    if name in ("4dvarnet", "meta-curvature", "modgrad"):
        kwargs["prior"] = dict(n_sources=n_sources, hidden=list(prior_hidden))
    return cls(**kwargs).config


__all__ = [
    "EUnet",
    "FourDVarNet",
    "LEARNED_BASELINES",
    "MetaCurvatureSolver",
    "ModGradSolver",
    "OPTEnet",
    "baseline_config",
]
