"""Input checks shared by the metrics: arrays, seeds, positions, graph."""

import numpy as np
from mne.utils import _validate_type
from scipy import sparse


def _to_numpy(data, name):
    """Return ``data`` as a 3-D ndarray (n_samples, n_sources, n_times)."""
    from mne import SourceEstimate

    if isinstance(data, SourceEstimate):
        data = [data]
    if (
        isinstance(data, list | tuple)
        and len(data)
        and all(isinstance(d, SourceEstimate) for d in data)
    ):
        data = np.stack([d.data for d in data])
    elif hasattr(data, "detach") and hasattr(data, "cpu"):  # torch.Tensor
        data = data.detach().cpu().numpy()
    _validate_type(data, np.ndarray, name, "ndarray, torch.Tensor or SourceEstimate")
    if data.ndim != 3:
        raise ValueError(
            f"{name} must be shaped (n_samples, n_sources, n_times), got shape "
            f"{data.shape}. Add a leading axis for a single sample."
        )
    if not np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float64)
    return data


def _check_pair(estimate, ground_truth):
    estimate = _to_numpy(estimate, "estimate")
    ground_truth = _to_numpy(ground_truth, "ground_truth")
    if estimate.shape != ground_truth.shape:
        raise ValueError(
            f"estimate and ground_truth must have the same shape, got "
            f"{estimate.shape} and {ground_truth.shape}."
        )
    return estimate, ground_truth


def _check_seeds(seeds, n_samples, n_sources):
    if hasattr(seeds, "detach"):
        seeds = seeds.detach().cpu().numpy()
    seeds = np.asarray(seeds)
    if seeds.ndim == 1:
        seeds = seeds[:, np.newaxis]
    if seeds.ndim != 2 or seeds.shape[0] != n_samples:
        raise ValueError(
            f"seeds must be shaped (n_samples, max_seeds) = ({n_samples}, k) with -1 "
            f"padding, got shape {seeds.shape}."
        )
    if not np.issubdtype(seeds.dtype, np.integer):
        raise TypeError(f"seeds must hold integers, got dtype {seeds.dtype}.")
    if seeds.size and (seeds.max() >= n_sources or seeds.min() < -1):
        raise ValueError(
            f"seeds must be source indices in [0, {n_sources}) or -1 (padding), got "
            f"values in [{seeds.min()}, {seeds.max()}]."
        )
    if not np.all((seeds >= 0).any(axis=1)):
        bad = np.flatnonzero(~(seeds >= 0).any(axis=1))
        raise ValueError(
            f"every sample needs at least one seed; samples {bad} have none."
        )
    return seeds.astype(np.int64)


def _check_positions(positions, n_sources):
    positions = np.asarray(positions, dtype=np.float64)
    if positions.shape != (n_sources, 3):
        raise ValueError(
            f"positions must be shaped ({n_sources}, 3) in metres, got "
            f"{positions.shape}."
        )
    if np.abs(positions).max() > 1.0:
        raise ValueError(
            "positions must be in metres, but some exceed 1 m in absolute value; "
            "divide millimetre positions by 1000."
        )
    return positions


def neighborhood(adjacency, order):
    """Boolean mask of the sources within ``order`` hops of each source.

    Parameters
    ----------
    adjacency : scipy.sparse array | ndarray, shape (n_sources, n_sources)
        Symmetric source adjacency graph (non-zero = neighbours).
    order : int
        Number of hops (``0`` keeps each source alone).

    Returns
    -------
    mask : ndarray of bool, shape (n_sources, n_sources)
        ``mask[i, j]`` is True when ``j`` is reachable from ``i`` in at most
        ``order`` steps (breadth-first search by powers of ``I + adjacency``).
    """
    _validate_type(order, "int", "order")
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}.")
    adjacency = sparse.csr_array(adjacency, dtype=np.float64)
    n = adjacency.shape[0]
    if adjacency.shape != (n, n):
        raise ValueError(f"adjacency must be square, got shape {adjacency.shape}.")
    step = sparse.csr_array((adjacency != 0).astype(np.float64)) + sparse.eye_array(
        n, format="csr"
    )
    reach = sparse.eye_array(n, format="csr")
    for _ in range(order):
        reach = sparse.csr_array(((reach @ step) > 0).astype(np.float64))
    return reach.toarray() > 0


def _check_neighborhood(adjacency, order, n_sources):
    mask = neighborhood(adjacency, order)
    if mask.shape != (n_sources, n_sources):
        raise ValueError(
            f"adjacency must be ({n_sources}, {n_sources}) to match the estimate, got "
            f"{mask.shape}."
        )
    return mask


def _check_sfreq(sfreq):
    _validate_type(sfreq, "numeric", "sfreq")
    if not sfreq > 0:
        raise ValueError(f"sfreq must be positive (Hz), got {sfreq}.")
    return float(sfreq)


def _check_active(active, n_samples, n_sources):
    if active is None:
        return None
    if hasattr(active, "detach"):
        active = active.detach().cpu().numpy()
    active = np.asarray(active)
    if active.shape != (n_samples, n_sources) or active.dtype != bool:
        raise ValueError(
            f"active must be a boolean array shaped ({n_samples}, {n_sources}), got "
            f"dtype {active.dtype} and shape {active.shape}."
        )
    return active
