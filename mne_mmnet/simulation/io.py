"""Simulation directories: save and load (sharded storage, sha256-checked)."""

import json
import os
import zipfile
from pathlib import Path

import numpy as np
from mne.utils import _validate_type, logger, verbose

from .._version import __version__
from ..utils import _sha256
from ._base import Simulation

# the reading side of the format, defined in _shards (also imported from here
# by _generate and training._cli)
from ._shards import (
    _FORMAT,
    _FORMAT_VERSION,
    _MANIFEST,
    _PARAM_PREFIX,
    _check_path,
    _read_manifest,
    _Shard,
)


# --------------------------------------------------------------------------
# Shards: deterministic .npz files (fixed zip timestamps), sources row-sparse
def _write_npz(fname, arrays):
    """Write arrays to an uncompressed .npz whose bytes depend on data only."""
    with zipfile.ZipFile(fname, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fid:
                value = np.asarray(value)
                if not value.flags.c_contiguous:
                    value = value.copy(order="C")
                np.lib.format.write_array(fid, value, allow_pickle=False)


def _write_shard(sim, fname):
    """Atomically write one shard; return its sha256."""
    rows = np.any(sim.sources != 0, axis=2)
    arrays = dict(
        eeg=sim.eeg.astype(np.float32, copy=False),
        seeds=sim.seeds.astype(np.int64, copy=False),
        patch_masks=sim.patch_masks.astype(bool, copy=False),
        source_rows=rows,
        source_values=sim.sources[rows].astype(np.float32, copy=False),
        sfreq=np.float64(sim.sfreq),
    )
    for key, value in sim.sample_params.items():
        arrays[_PARAM_PREFIX + key] = np.asarray(value)
    fname = Path(fname)
    tmp = fname.with_name(f".{fname.name}.{os.getpid()}.tmp")
    try:
        _write_npz(tmp, arrays)
        os.replace(tmp, fname)
    finally:
        if tmp.exists():
            tmp.unlink()
    return _sha256(fname)


def _to_json(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"Cannot store {type(obj).__name__} in the manifest.")


def _write_manifest(path, manifest):
    fname = Path(path) / _MANIFEST
    tmp = fname.with_name(f".{_MANIFEST}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=_to_json) + "\n")
    os.replace(tmp, fname)


def _shard_name(index):
    return f"shard-{index:05d}.npz"


@verbose
def save_simulation(sim, path, *, shard_size=None, overwrite=False, verbose=None):
    """Save a simulation as a sharded directory.

    Parameters
    ----------
    sim : Simulation
        The data to save.
    path : path-like
        Output directory (created); holds ``manifest.json`` and
        ``shard-00000.npz``, ...
    shard_size : int | None
        Samples per shard; ``None`` writes a single shard.
    overwrite : bool
        Whether to replace an existing simulation directory.
    %(verbose)s

    Returns
    -------
    path : pathlib.Path
        The directory written.

    Raises
    ------
    FileExistsError
        If ``path`` already holds a manifest and ``overwrite`` is False.

    Notes
    -----
    Shards are uncompressed ``.npz`` files with fixed zip timestamps, so equal
    data give byte-identical files; sources are stored row-sparse (only the
    nonzero source rows) and made dense again on loading.
    """
    _validate_type(sim, Simulation, "sim")
    path = _check_path(path)
    n = len(sim)
    shard_size = n if shard_size is None else shard_size
    _validate_type(shard_size, "int-like", "shard_size")
    if int(shard_size) < 1:
        raise ValueError(f"shard_size must be positive, got {shard_size}.")
    shard_size = int(shard_size)
    if (path / _MANIFEST).exists() and not overwrite:
        raise FileExistsError(f"{path} already holds a simulation; overwrite=True.")
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("shard-*.npz"):
        old.unlink()
    shards = []
    for index, start in enumerate(range(0, n, shard_size)):
        part = sim.subset(np.arange(start, min(start + shard_size, n)))
        sha = _write_shard(part, path / _shard_name(index))
        shards.append(dict(file=_shard_name(index), n=len(part), seed=None, sha256=sha))
    manifest = _new_manifest(sim.meta.get("kind"), n, shard_size, sim.meta, {})
    manifest.update(_shapes(sim), shards=shards)
    _write_manifest(path, manifest)
    logger.info(f"Saved {n} samples in {len(shards)} shard(s) to {path}")
    return path


def _new_manifest(kind, n, shard_size, meta, parameters, seed=None):
    return dict(
        format=_FORMAT,
        format_version=_FORMAT_VERSION,
        package_version=__version__,
        kind=kind,
        n=int(n),
        shard_size=int(shard_size),
        seed=seed,
        parameters=parameters,
        meta=meta,
    )


def _shapes(sim):
    return dict(
        sfreq=float(sim.sfreq),
        n_times=int(sim.eeg.shape[2]),
        n_channels=int(sim.eeg.shape[1]),
        n_sources=int(sim.sources.shape[1]),
    )


@verbose
def load_simulation(path, *, indices=None, check_hash=True, verbose=None):
    """Load a simulation directory.

    The directory is one written by
    :func:`~mne_mmnet.simulation.save_simulation` or
    :func:`~mne_mmnet.simulation.generate_dataset`.

    Parameters
    ----------
    path : path-like
        The simulation directory.
    indices : array-like of int | None
        Global sample indices to load, in the order given; ``None`` loads all.
        Only the shards holding them are read.
    check_hash : bool
        Whether to check each shard read against its sha256 in the manifest.
    %(verbose)s

    Returns
    -------
    sim : Simulation
        The samples.

    Raises
    ------
    FileNotFoundError
        If ``path`` has no manifest or a shard is missing.
    ValueError
        If an index is out of range, a shard is incomplete, or (with
        ``check_hash``) a shard does not match its sha256.
    """
    path = _check_path(path)
    manifest = _read_manifest(path)
    entries = manifest["shards"]
    missing = [e["file"] for e in entries if e.get("sha256") is None]
    if missing:
        raise ValueError(
            f"{path} is incomplete ({len(missing)} shard(s) not generated); "
            "rerun generate_dataset to finish it."
        )
    counts = np.array([e["n"] for e in entries], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)])
    total = int(starts[-1])
    if indices is None:
        indices = np.arange(total)
    indices = np.asarray(indices)
    if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
        raise ValueError(f"indices must be a 1-D array of int, got {indices!r}.")
    if indices.size and (indices.min() < -total or indices.max() >= total):
        raise ValueError(f"indices must be in [-{total}, {total}), got {indices}.")
    indices = np.where(indices < 0, indices + total, indices).astype(np.int64)
    shard_of = np.searchsorted(starts, indices, side="right") - 1
    meta = dict(manifest.get("meta") or {})
    if not indices.size:
        raise ValueError("indices is empty; nothing to load.")
    sim = None
    for s in np.unique(shard_of):
        fname = path / entries[s]["file"]
        if check_hash and _sha256(fname) != entries[s]["sha256"]:
            raise ValueError(
                f"{fname} does not match its sha256 in the manifest; regenerate it."
            )
        shard = _Shard(fname)
        if sim is None:  # allocate once, fill shard by shard
            sim = _empty(shard, len(indices), meta)
        which = np.flatnonzero(shard_of == s)
        local = indices[which] - starts[s]
        shard.sources(local, out=sim.sources, positions=which)
        sim.eeg[which] = shard.eeg[local]
        sim.seeds[which] = shard.seeds[local]
        sim.patch_masks[which] = shard.patch_masks[local]
        for key, value in shard.sample_params.items():
            sim.sample_params[key][which] = value[local]
    return sim


def _empty(shard, n, meta):
    return Simulation(
        sources=np.zeros(
            (n,) + shard.source_rows.shape[1:] + shard.eeg.shape[2:], np.float32
        ),
        eeg=np.empty((n,) + shard.eeg.shape[1:], shard.eeg.dtype),
        seeds=np.empty((n,) + shard.seeds.shape[1:], shard.seeds.dtype),
        patch_masks=np.empty((n,) + shard.patch_masks.shape[1:], bool),
        sfreq=shard.sfreq,
        meta=meta,
        sample_params={
            k: np.empty((n,) + v.shape[1:], v.dtype)
            for k, v in shard.sample_params.items()
        },
    )


def __getattr__(name):
    # the torch Dataset lives in _dataset and is importable from here too;
    # loaded on first use so that reading simulations does not import torch
    if name == "SimulationDataset":
        from ._dataset import SimulationDataset

        return SimulationDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
