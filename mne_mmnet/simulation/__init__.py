"""Simulated EEG data sets: SEREEGA-like patches, neural masses, broad mixtures.

And dipoles made by MNE-Python's own functions, for independent tests.
"""

from ._base import Simulation
from ._generate import generate_dataset, shard_seed
from ._jansen_rit import jansen_rit
from .broad import simulate_broad
from .io import load_simulation, save_simulation
from .mne_dipoles import simulate_mne_dipoles
from .nmm import simulate_nmm
from .noise import add_noise, measure_snr
from .sereega import simulate_sereega

__all__ = [
    "Simulation",
    "SimulationDataset",
    "add_noise",
    "generate_dataset",
    "jansen_rit",
    "load_simulation",
    "measure_snr",
    "save_simulation",
    "simulate_broad",
    "simulate_mne_dipoles",
    "shard_seed",
    "simulate_nmm",
    "simulate_sereega",
]


def __getattr__(name):
    # the torch Dataset on first use: simulating and reading need no torch
    if name == "SimulationDataset":
        from ._dataset import SimulationDataset

        return SimulationDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
