"""Resumable, sharded generation of simulated data sets."""

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
from mne.utils import _check_option, _validate_type, logger, verbose
from tqdm.auto import tqdm

from .io import (
    _MANIFEST,
    _check_path,
    _new_manifest,
    _read_manifest,
    _sha256,
    _shapes,
    _shard_name,
    _to_json,
    _write_manifest,
    _write_shard,
)

_KINDS = ("sereega", "nmm")


def _simulator(kind):
    if kind == "sereega":
        from .sereega import simulate_sereega

        return simulate_sereega
    from .nmm import simulate_nmm

    return simulate_nmm


def shard_seed(seed, index):
    """Seed of shard ``index`` of a data set generated with ``seed``.

    Parameters
    ----------
    seed : int
        The data set's seed.
    index : int
        The shard index.

    Returns
    -------
    shard_seed : int
        ``np.random.SeedSequence(seed, spawn_key=(index,))`` reduced to one
        64-bit integer; independent streams for different shards.
    """
    sequence = np.random.SeedSequence(int(seed), spawn_key=(int(index),))
    return int(sequence.generate_state(1, np.uint64)[0])


def _fingerprint(value):
    """Short sha256 of a forward's leadfield and positions, or of a matrix."""
    from scipy import sparse

    digest = hashlib.sha256()
    if isinstance(value, dict) and "sol" in value:
        arrays = [value["sol"]["data"], value["source_rr"]]
    elif sparse.issparse(value):
        csr = sparse.csr_array(value, dtype=bool)
        csr.sum_duplicates()
        csr.sort_indices()
        arrays = [np.array(csr.shape), csr.indptr, csr.indices]
    else:
        arrays = [value]
    for array in arrays:
        digest.update(np.ascontiguousarray(np.asarray(array, np.float64)).tobytes())
    return f"sha256:{digest.hexdigest()[:16]}"


def _jsonable(parameters):
    """Parameters as stored in the manifest (head models as fingerprints)."""
    out = {}
    for key, value in sorted(parameters.items()):
        if key in ("fwd", "adjacency") and value is not None:
            out[key] = _fingerprint(value)
            continue
        try:
            out[key] = json.loads(json.dumps(value, default=_to_json))
        except TypeError:
            out[key] = f"<{type(value).__name__}>"
    return out


@verbose
def generate_dataset(
    path,
    kind,
    n,
    *,
    shard_size=1000,
    seed=0,
    overwrite=False,
    verbose=None,
    **kwargs,
):
    """Generate a simulated data set in shards, resuming where it stopped.

    Parameters
    ----------
    path : path-like
        Output directory: ``manifest.json`` and ``shard-00000.npz``, ...
    kind : ``"sereega"`` | ``"nmm"``
        Which simulator to run (:func:`~mne_mmnet.simulate_sereega` or
        :func:`~mne_mmnet.simulate_nmm`).
    n : int
        Total number of samples.
    shard_size : int
        Samples per shard (the last shard may be smaller).
    seed : int
        Data set seed; shard ``i`` uses :func:`shard_seed` ``(seed, i)``.
    overwrite : bool
        Whether to discard an existing directory generated with other
        parameters (otherwise that raises).
    %(verbose)s
    **kwargs
        Passed to the simulator (``snr_db``, ``noise``, ``n_times``, ...).

    Returns
    -------
    manifest : dict
        The final manifest; ``manifest["regenerated"]`` lists the shard
        indices written by this call.

    Raises
    ------
    ValueError
        If ``path`` holds a data set generated with other parameters and
        ``overwrite`` is False.

    Notes
    -----
    Shards already on disk whose sha256 matches the manifest are skipped, so
    an interrupted run is resumed by calling again with the same arguments;
    a missing or corrupted shard is regenerated. Shards and the manifest are
    written to a temporary file and renamed, so a crash never leaves a
    half-written shard under its final name. The same arguments give
    byte-identical shards.
    """
    path = _check_path(path)
    _check_option("kind", kind, _KINDS)
    for name, value in (("n", n), ("shard_size", shard_size), ("seed", seed)):
        _validate_type(value, "int-like", name)
    n, shard_size, seed = int(n), int(shard_size), int(seed)
    if n < 1 or shard_size < 1 or seed < 0:
        raise ValueError(
            f"n and shard_size must be positive and seed >= 0, got n={n}, "
            f"shard_size={shard_size}, seed={seed}."
        )
    parameters = _jsonable(kwargs)
    manifest = _new_manifest(kind, n, shard_size, None, parameters, seed=seed)
    counts = [min(shard_size, n - start) for start in range(0, n, shard_size)]
    manifest["shards"] = [
        dict(file=_shard_name(i), n=c, seed=shard_seed(seed, i), sha256=None)
        for i, c in enumerate(counts)
    ]
    if (path / _MANIFEST).exists():
        old = _read_manifest(path)
        same = all(
            old.get(key) == manifest[key]
            for key in ("kind", "n", "shard_size", "seed", "parameters")
        )
        if not same and not overwrite:
            raise ValueError(
                f"{path} holds a data set generated with other parameters "
                f"(kind={old.get('kind')}, n={old.get('n')}, seed={old.get('seed')}, "
                f"parameters={old.get('parameters')}); use another directory or "
                "overwrite=True."
            )
        if same:
            for entry, old_entry in zip(manifest["shards"], old["shards"]):
                entry["sha256"] = old_entry.get("sha256")
            for key in ("meta", "sfreq", "n_times", "n_channels", "n_sources"):
                if key in old:
                    manifest[key] = old[key]
    path.mkdir(parents=True, exist_ok=True)
    todo = []
    for i, entry in enumerate(manifest["shards"]):
        fname = path / entry["file"]
        if entry["sha256"] is None or not fname.is_file():
            todo.append(i)
        elif _sha256(fname) != entry["sha256"]:
            logger.info(f"{entry['file']} does not match its sha256; regenerating")
            todo.append(i)
    logger.info(
        f"Generating {kind} data set in {path}: {len(counts)} shard(s), "
        f"{len(counts) - len(todo)} already present, {len(todo)} to write"
    )
    _write_manifest(path, manifest)
    simulate = _simulator(kind)
    disable = logger.getEffectiveLevel() > logging.INFO
    start = time.perf_counter()
    for i in tqdm(todo, desc=f"{kind} shards", unit="shard", disable=disable):
        entry = manifest["shards"][i]
        entry["sha256"] = None
        sim = simulate(entry["n"], seed=entry["seed"], verbose=False, **kwargs)
        entry["sha256"] = _write_shard(sim, Path(path) / entry["file"])
        if manifest.get("meta") is None:
            meta = dict(sim.meta, seed=seed)
            manifest.update(_shapes(sim), meta=meta)
        _write_manifest(path, manifest)
    elapsed = time.perf_counter() - start
    logger.info(f"Wrote {len(todo)} shard(s) in {elapsed:.1f} s")
    manifest["regenerated"] = todo
    return manifest
