"""Simulation directories, reading side: manifest, shards and paths."""

import json
from pathlib import Path

import numpy as np
from mne.utils import _validate_type

_MANIFEST = "manifest.json"
_FORMAT = "mne-mmnet-simulation"
_FORMAT_VERSION = 1
_PARAM_PREFIX = "param__"


class _Shard:
    """A shard in memory, sources kept row-sparse until a sample is asked."""

    def __init__(self, fname):
        with np.load(fname, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        self.eeg = arrays["eeg"]
        self.seeds = arrays["seeds"]
        self.patch_masks = arrays["patch_masks"]
        self.source_rows = arrays["source_rows"]
        self.source_values = arrays["source_values"]
        self.sfreq = float(arrays["sfreq"])
        self.sample_params = {
            key[len(_PARAM_PREFIX) :]: value
            for key, value in arrays.items()
            if key.startswith(_PARAM_PREFIX)
        }
        counts = self.source_rows.sum(axis=1)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self):
        return len(self.eeg)

    def sources(self, indices, out=None, positions=None):
        """Dense sources of ``indices``, written into ``out[positions]``."""
        indices = np.asarray(indices, dtype=np.int64)
        if out is None:
            shape = (len(indices),) + self.source_rows.shape[1:] + self.eeg.shape[2:]
            out = np.zeros(shape, np.float32)
            positions = np.arange(len(indices))
        rows = self.source_rows[indices]
        counts = rows.sum(axis=1)
        # positions of the selected samples' rows in source_values
        first = self.offsets[indices] - np.concatenate([[0], np.cumsum(counts)[:-1]])
        take = np.repeat(first, counts) + np.arange(counts.sum())
        which, row = np.nonzero(rows)
        out[positions[which], row] = self.source_values[take]
        return out


def _read_manifest(path):
    fname = Path(path) / _MANIFEST
    if not fname.is_file():
        raise FileNotFoundError(
            f"No {_MANIFEST} in {path}: not a simulation directory (write one "
            "with save_simulation or generate_dataset)."
        )
    manifest = json.loads(fname.read_text())
    if manifest.get("format") != _FORMAT:
        raise ValueError(f"{fname} is not an mne-mmnet simulation manifest.")
    return manifest


def _check_path(path, name="path"):
    _validate_type(path, "path-like", name)
    return Path(path).expanduser()
