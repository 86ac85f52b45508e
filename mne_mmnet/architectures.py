"""Every learned-solver architecture, by name: MM-Net and the baselines.

This module sits above :mod:`mne_mmnet.networks` and
:mod:`mne_mmnet.learned_baselines` (importing both registers their classes),
so that neither has to import the other.
"""

import copy

from mne.utils import _validate_type

from . import learned_baselines  # noqa: F401 (registers the baselines)
from .networks.base import _ARCHITECTURES


def build_model(config):
    """Build an untrained learned solver from its ``config`` dict.

    Parameters
    ----------
    config : dict
        As returned by the ``config`` attribute of a learned solver. The key
        ``"architecture"`` selects the class (``"mmnet"`` when absent, as in
        files written before the baselines existed).

    Returns
    -------
    model : LearnedSolver
        A new model with freshly initialised weights.
    """
    _validate_type(config, dict, "config")
    config = copy.deepcopy(config)
    name = config.pop("architecture", "mmnet")
    if name not in _ARCHITECTURES:
        raise ValueError(
            f"Unknown learned-solver architecture {name!r}; known: "
            f"{sorted(_ARCHITECTURES)}."
        )
    return _ARCHITECTURES[name].from_config(config)
