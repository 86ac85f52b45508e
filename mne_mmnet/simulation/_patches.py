"""Head model access and extended patches on the source adjacency graph."""

import numpy as np
from mne.utils import _validate_type
from scipy import sparse
from scipy.sparse.csgraph import shortest_path

_UNREACHABLE = np.iinfo(np.int16).max


def _get_head_model(fwd, adjacency):
    """Return (leadfield, positions, adjacency) with consistent shapes."""
    if fwd is None:
        from ..forward import read_template_forward

        fwd = read_template_forward()
    _validate_type(fwd, dict, "fwd", "mne.Forward")
    for key in ("sol", "source_rr"):
        if key not in fwd:
            raise ValueError(f"fwd must be an mne.Forward (no {key!r} entry found).")
    leadfield = np.asarray(fwd["sol"]["data"], dtype=np.float64)
    positions = np.asarray(fwd["source_rr"], dtype=np.float64)
    n_sources = leadfield.shape[1]
    if positions.shape != (n_sources, 3):
        raise ValueError(
            f"fwd has {n_sources} leadfield columns but source_rr has shape "
            f"{positions.shape}; use a fixed-orientation forward (one column "
            "per source)."
        )
    if adjacency is None:
        from ..forward import read_template_adjacency

        adjacency = read_template_adjacency()
    if not sparse.issparse(adjacency):
        adjacency = np.asarray(adjacency)
    adjacency = sparse.csr_array(adjacency, dtype=bool)
    if adjacency.shape != (n_sources, n_sources):
        raise ValueError(
            f"adjacency must have shape ({n_sources}, {n_sources}) to match the "
            f"forward, got {adjacency.shape}; pass adjacency= together with fwd=."
        )
    return leadfield, positions, adjacency


def _hop_distances(adjacency):
    """Graph (hop) distances between all sources, int16, unreachable = max."""
    hops = shortest_path(adjacency, method="D", directed=False, unweighted=True)
    hops[~np.isfinite(hops)] = _UNREACHABLE
    return hops.astype(np.int16)


def _check_range(value, name, *, integer=False, low=None):
    """Turn a number or a (min, max) pair into a validated (min, max) tuple."""
    kind = "int-like" if integer else "numeric"
    if isinstance(value, list | tuple | np.ndarray):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or (min, max), got {value}.")
        lo, hi = value
    else:
        lo = hi = value
    _validate_type(lo, kind, f"{name}[0]")
    _validate_type(hi, kind, f"{name}[1]")
    cast = int if integer else float
    lo, hi = cast(lo), cast(hi)
    if hi < lo or (low is not None and lo < low):
        raise ValueError(
            f"{name} must satisfy {low if low is not None else '-inf'} <= min <= "
            f"max, got {value}."
        )
    return lo, hi


def _draw_patches(n, n_patches, orders, hops, rng, *, min_gap=2, max_tries=100):
    """Draw patch centres and orders, -1 padded to (n, max_patches).

    Several patches in one sample are kept ``min_gap`` hops apart: on a graph
    the hop distance between two balls B(s1, o1) and B(s2, o2) is
    ``max(0, d(s1, s2) - o1 - o2)``, so the rule is
    ``d(s1, s2) >= o1 + o2 + min_gap``.
    """
    n_sources = hops.shape[0]
    counts = rng.integers(n_patches[0], n_patches[1] + 1, size=n)
    max_patches = int(n_patches[1])
    seeds = np.full((n, max_patches), -1, dtype=np.int64)
    patch_orders = np.full((n, max_patches), -1, dtype=np.int64)
    seeds[:, 0] = rng.integers(0, n_sources, size=n)
    patch_orders[:, 0] = rng.integers(orders[0], orders[1] + 1, size=n)
    for idx in np.flatnonzero(counts > 1):
        for k in range(1, counts[idx]):
            for _ in range(max_tries):
                order = rng.integers(orders[0], orders[1] + 1)
                gaps = hops[seeds[idx, :k]].astype(np.int64)
                need = patch_orders[idx, :k, np.newaxis] + order + min_gap
                candidates = np.flatnonzero(np.all(gaps >= need, axis=0))
                if candidates.size:
                    seeds[idx, k] = rng.choice(candidates)
                    patch_orders[idx, k] = order
                    break
            else:
                raise RuntimeError(
                    f"Could not place patch {k + 1} of sample {idx} "
                    f"{min_gap} orders away from the others in {max_tries} tries; "
                    "use fewer patches or smaller orders."
                )
    return seeds, patch_orders


def _patch_profiles(seeds, patch_orders, hops, distances):
    """Spatial profiles ``exp(-d^2 / (2 sd^2))``, sd = d_max / 2, per patch.

    Returns an array (n, max_patches, n_sources) that is zero outside each
    patch and for padded (-1) patch slots.
    """
    valid = seeds >= 0
    safe = np.where(valid, seeds, 0)
    inside = hops[safe] <= patch_orders[..., np.newaxis]
    inside &= valid[..., np.newaxis]
    dist = distances[safe]
    d_max = np.max(np.where(inside, dist, 0.0), axis=-1, keepdims=True)
    sd = np.where(d_max > 0, d_max / 2.0, 1.0)
    return np.where(inside, np.exp(-(dist**2) / (2.0 * sd**2)), 0.0)
