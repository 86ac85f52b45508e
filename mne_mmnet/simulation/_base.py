"""The container of simulated data."""

from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False)
class Simulation:
    """Simulated sources and EEG.

    Attributes
    ----------
    sources : array, shape (n_samples, n_sources, n_times)
        Ground-truth source time courses (float32, zero outside the patches).
    eeg : array, shape (n_samples, n_channels, n_times)
        Sensor data (float32), ``L @ sources`` (plus background activity for neural
        mass data) plus sensor noise; not re-referenced.
    seeds : array of int, shape (n_samples, max_patches)
        Region indices (int64) of the patch centres, ``-1`` padded.
    patch_masks : array of bool, shape (n_samples, n_sources)
        Regions inside any patch.
    sfreq : float
        Sampling frequency in Hz.
    meta : dict
        JSON-serialisable description (kind, SNR, noise colour, seed, ...).
    sample_params : dict of array
        Per-sample draws (first axis ``n_samples``), e.g. orders and amplitudes.
    """

    sources: np.ndarray
    eeg: np.ndarray
    seeds: np.ndarray
    patch_masks: np.ndarray
    sfreq: float
    meta: dict = field(default_factory=dict)
    sample_params: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.eeg)
        for name in ("sources", "seeds", "patch_masks"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"{name} has {len(getattr(self, name))} samples, eeg has {n}."
                )
        for name, value in self.sample_params.items():
            if len(value) != n:
                raise ValueError(
                    f"sample_params[{name!r}] has {len(value)} samples, eeg has {n}."
                )

    def __len__(self):
        return len(self.eeg)

    def __repr__(self):
        return (
            f"<Simulation | {self.meta.get('kind', '?')}, {len(self)} samples, "
            f"{self.sources.shape[1]} sources, {self.eeg.shape[1]} channels, "
            f"{self.eeg.shape[2]} times at {self.sfreq:g} Hz>"
        )

    @property
    def times(self):
        """Sample times in seconds, starting at 0."""
        return np.arange(self.eeg.shape[2]) / self.sfreq

    def subset(self, indices):
        """Return the samples at ``indices`` (in that order) as a Simulation."""
        indices = np.asarray(indices)
        return Simulation(
            sources=self.sources[indices],
            eeg=self.eeg[indices],
            seeds=self.seeds[indices],
            patch_masks=self.patch_masks[indices],
            sfreq=self.sfreq,
            meta=dict(self.meta),
            sample_params={k: v[indices] for k, v in self.sample_params.items()},
        )


def _concatenate(sims, meta):
    return Simulation(
        sources=np.concatenate([s.sources for s in sims]),
        eeg=np.concatenate([s.eeg for s in sims]),
        seeds=np.concatenate([s.seeds for s in sims]),
        patch_masks=np.concatenate([s.patch_masks for s in sims]),
        sfreq=sims[0].sfreq,
        meta=meta,
        sample_params={
            k: np.concatenate([s.sample_params[k] for s in sims])
            for k in sims[0].sample_params
        },
    )
