"""A torch Dataset over a sharded simulation directory, read lazily."""

from collections import OrderedDict

import numpy as np
import torch
from mne.utils import _validate_type

from ._shards import _check_path, _read_manifest, _Shard


class _LazyShards:
    """Index -> (shard, local index) with an LRU cache of loaded shards."""

    def __init__(self, path, max_cached_shards):
        self.path = _check_path(path)
        self.manifest = _read_manifest(self.path)
        counts = np.array([e["n"] for e in self.manifest["shards"]], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        self.max_cached = max_cached_shards
        self.cache = OrderedDict()

    def locate(self, index):
        total = int(self.starts[-1])
        if not -total <= index < total:
            raise IndexError(f"index {index} out of range for {total} samples.")
        index = index % total
        s = int(np.searchsorted(self.starts, index, side="right") - 1)
        return self.shard(s), index - int(self.starts[s])

    def shard(self, s):
        if s in self.cache:
            self.cache.move_to_end(s)
            return self.cache[s]
        shard = _Shard(self.path / self.manifest["shards"][s]["file"])
        self.cache[s] = shard
        if self.max_cached is not None and len(self.cache) > self.max_cached:
            self.cache.popitem(last=False)
        return shard


class SimulationDataset(torch.utils.data.Dataset):
    """A torch Dataset over a sharded simulation directory.

    Items are ``(eeg, sources)`` tensors of shapes ``(n_channels, n_times)``
    and ``(n_sources, n_times)``. Shards are read lazily, when a sample in
    them is first asked for, and kept in memory in row-sparse form.

    Parameters
    ----------
    path : path-like
        The simulation directory (``manifest.json`` + shards).
    max_cached_shards : int | None
        How many shards to keep in memory (least recently used ones are
        dropped); ``None`` keeps every shard read. With a small cache, prefer
        a sampler that visits one shard at a time.
    dtype : torch.dtype
        Floating dtype of the returned tensors.

    Attributes
    ----------
    manifest : dict
        The directory's manifest.
    sfreq : float
        Sampling frequency in Hz.
    """

    def __init__(self, path, *, max_cached_shards=None, dtype=torch.float32):
        if max_cached_shards is not None:
            _validate_type(max_cached_shards, "int-like", "max_cached_shards")
            if int(max_cached_shards) < 1:
                raise ValueError(
                    f"max_cached_shards must be >= 1 or None, got {max_cached_shards}."
                )
            max_cached_shards = int(max_cached_shards)
        _validate_type(dtype, torch.dtype, "dtype")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}.")
        self._shards = _LazyShards(path, max_cached_shards)
        incomplete = [e for e in self.manifest["shards"] if e.get("sha256") is None]
        if incomplete:
            raise ValueError(
                f"{path} is incomplete ({len(incomplete)} shard(s) missing); "
                "rerun generate_dataset to finish it."
            )
        self.dtype = dtype

    @property
    def manifest(self):
        """The directory's manifest (dict)."""
        return self._shards.manifest

    @property
    def sfreq(self):
        """Sampling frequency in Hz."""
        return float(self.manifest["sfreq"])

    def __len__(self):
        return int(self._shards.starts[-1])

    def __getitem__(self, index):
        shard, local = self._shards.locate(int(index))
        eeg = torch.from_numpy(np.array(shard.eeg[local]))
        sources = torch.from_numpy(shard.sources([local])[0])
        return eeg.to(self.dtype), sources.to(self.dtype)
