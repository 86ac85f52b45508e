"""Training data plumbing: datasets, per-sample seeds, crops, leadfield."""

from pathlib import Path

import numpy as np
import torch
from mne.utils import _validate_type


def _sample_generator(seed, stream, index, device="cpu"):
    """Make a torch.Generator that depends only on (seed, stream, sample index).

    Per-sample draws make a batch's random starts and crops independent of
    how the batch is split across processes (data-parallel runs then match a
    single process on the same global batch).
    """
    state = np.random.SeedSequence([int(seed), int(stream) + 2, int(index)])
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(int(state.generate_state(1, dtype=np.uint64)[0] >> 1))
    return gen


class _IndexedDataset(torch.utils.data.Dataset):
    """Wrap a dataset of (eeg, sources) items to also return the index."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        eeg, sources = self.dataset[index]
        return index, torch.as_tensor(eeg), torch.as_tensor(sources)


class _ArrayDataset(torch.utils.data.Dataset):
    def __init__(self, eeg, sources):
        if len(eeg) != len(sources):
            raise ValueError(
                f"eeg has {len(eeg)} samples but sources has {len(sources)}."
            )
        self.eeg = eeg
        self.sources = sources

    def __len__(self):
        return len(self.eeg)

    def __getitem__(self, index):
        return (
            torch.as_tensor(np.asarray(self.eeg[index], np.float32)),
            torch.as_tensor(np.asarray(self.sources[index], np.float32)),
        )


def _as_dataset(data, name="data"):
    """Directory, Simulation, (eeg, sources) pair or Dataset -> indexed Dataset."""
    from ..simulation import Simulation, SimulationDataset

    if isinstance(data, str | Path):
        data = SimulationDataset(Path(data).expanduser())
    elif isinstance(data, Simulation):
        data = _ArrayDataset(data.eeg, data.sources)
    elif isinstance(data, tuple | list) and len(data) == 2:
        data = _ArrayDataset(*data)
    _validate_type(
        data,
        torch.utils.data.Dataset,
        name,
        "path-like, Simulation, (eeg, sources) or Dataset",
    )
    if len(data) == 0:
        raise ValueError(f"{name} is empty.")
    return _IndexedDataset(data)


def _validation_simulation(data, n_max):
    """Load the first ``n_max`` validation samples as a Simulation (or arrays)."""
    from ..simulation import Simulation, load_simulation

    if isinstance(data, str | Path):
        from ..simulation import SimulationDataset

        n = min(len(SimulationDataset(Path(data).expanduser())), n_max)
        return load_simulation(data, indices=np.arange(n), verbose=False)
    if isinstance(data, Simulation):
        return data.subset(np.arange(min(len(data), n_max)))
    return None  # generic dataset: meta-loss only


def _crop(eeg, sources, indices, crop, seed, stream):
    """Random temporal windows of length ``crop`` holding each sample's peak.

    The peak is the time of largest source power; the window start is drawn
    uniformly among the windows containing it.
    """
    n_times = eeg.shape[-1]
    if crop is None or crop >= n_times:
        return eeg, sources
    power = sources.square().sum(dim=1)
    peaks = power.argmax(dim=1)
    out_eeg, out_src = [], []
    for k, index in enumerate(indices.tolist()):
        peak = int(peaks[k])
        low, high = max(0, peak - crop + 1), min(peak, n_times - crop)
        gen = _sample_generator(seed, stream, index)
        start = low + int(torch.randint(high - low + 1, (1,), generator=gen))
        out_eeg.append(eeg[k, :, start : start + crop])
        out_src.append(sources[k, :, start : start + crop])
    return torch.stack(out_eeg), torch.stack(out_src)


def _random_starts(indices, shape, seed, stream, *, dtype, device):
    """Draw the paper's ``1e-3 N(0, 1)`` start, per sample."""
    from ..solver.linear import RANDOM_START_SCALE

    starts = [
        torch.randn(shape, generator=_sample_generator(seed, stream, i), dtype=dtype)
        for i in indices.tolist()
    ]
    return (RANDOM_START_SCALE * torch.stack(starts)).to(device)


def _get_leadfield(leadfield, n_channels, n_sources):
    """Leadfield as float64 array, template by default, checked against data."""
    if leadfield is None:
        from ..forward import read_template_forward

        leadfield = read_template_forward(verbose=False)["sol"]["data"]
    elif hasattr(leadfield, "__getitem__") and not isinstance(
        leadfield, np.ndarray | torch.Tensor
    ):
        leadfield = leadfield["sol"]["data"]  # an mne.Forward
    leadfield = np.asarray(
        leadfield.detach().cpu() if isinstance(leadfield, torch.Tensor) else leadfield,
        dtype=np.float64,
    )
    if leadfield.shape != (n_channels, n_sources):
        raise ValueError(
            f"The leadfield has shape {leadfield.shape} but the data have "
            f"{n_channels} channels and {n_sources} sources."
        )
    return leadfield
