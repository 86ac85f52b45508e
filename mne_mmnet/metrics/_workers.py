"""Vectorised per-sample workers of the metrics in :mod:`mne_mmnet.metrics`."""

import numpy as np
from scipy.stats import rankdata

_CHUNK = 64  # samples processed at once: bounds the float64 temporaries


def _max_abs_normalize(a, axis):
    """Divide by the largest absolute value along ``axis`` (all-zero stays zero)."""
    scale = np.abs(a).max(axis=axis, keepdims=True)
    return a / np.where(scale > 0, scale, 1.0)


def _seed_mean(values, valid):
    """Average seed-wise values (n, k) over the valid seeds of each sample."""
    values = np.where(valid, values, 0.0)
    return values.sum(axis=1) / valid.sum(axis=1)


def _seed_quantities(estimate, ground_truth, seeds):
    """Per-seed reference instants and spatial maps at those instants."""
    rows = np.arange(len(seeds))[:, np.newaxis]
    safe = np.where(seeds >= 0, seeds, 0)
    t_ref = np.abs(ground_truth[rows, safe, :]).argmax(axis=-1)  # (n, k)
    # advanced indices split by a slice -> their axes come first: (n, k, n_sources)
    est_maps = np.asarray(estimate[rows, :, t_ref], dtype=np.float64)
    gt_maps = np.asarray(ground_truth[rows, :, t_ref], dtype=np.float64)
    return safe, t_ref, est_maps, gt_maps


def _peak_in_neighborhood(est_maps, safe, mask):
    """Index of the largest |estimate| inside each seed's neighbourhood."""
    score = np.where(mask[safe], np.abs(est_maps), -np.inf)
    return score.argmax(axis=-1)  # ties -> lowest index


def _le_te(estimate, ground_truth, seeds, positions, mask, sfreq):
    valid = seeds >= 0
    safe, t_ref, est_maps, _ = _seed_quantities(estimate, ground_truth, seeds)
    peak = _peak_in_neighborhood(est_maps, safe, mask)
    le = 1e3 * np.linalg.norm(positions[safe] - positions[peak], axis=-1)
    rows = np.arange(len(seeds))[:, np.newaxis]
    t_hat = np.abs(estimate[rows, peak, :]).argmax(axis=-1)
    te = None if sfreq is None else 1e3 * np.abs(t_ref - t_hat) / sfreq
    return _seed_mean(le, valid), None if te is None else _seed_mean(te, valid)


def _nmse(estimate, ground_truth, seeds):
    _, _, est_maps, gt_maps = _seed_quantities(estimate, ground_truth, seeds)
    diff = _max_abs_normalize(gt_maps, -1) - _max_abs_normalize(est_maps, -1)
    return _seed_mean((diff**2).mean(axis=-1), seeds >= 0)


def _auc(estimate, ground_truth, seeds, active):
    _, _, est_maps, gt_maps = _seed_quantities(estimate, ground_truth, seeds)
    labels = (
        gt_maps != 0
        if active is None
        else np.broadcast_to(active[:, np.newaxis, :], gt_maps.shape)
    )
    ranks = rankdata(np.abs(est_maps), axis=-1)  # average ranks for ties
    n_pos = labels.sum(axis=-1)
    n_neg = labels.shape[-1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        value = ((ranks * labels).sum(axis=-1) - n_pos * (n_pos + 1) / 2) / (
            n_pos * n_neg
        )
    valid = (seeds >= 0) & (n_pos > 0) & (n_neg > 0)
    out = np.full(len(seeds), np.nan)
    has = valid.any(axis=1)
    out[has] = _seed_mean(value[has], valid[has])
    return out


def _psnr(estimate, ground_truth):
    n = len(estimate)
    est = _max_abs_normalize(estimate.reshape(n, -1).astype(np.float64), -1)
    gt = _max_abs_normalize(ground_truth.reshape(n, -1).astype(np.float64), -1)
    mse = ((gt - est) ** 2).mean(axis=-1)
    with np.errstate(divide="ignore"):
        return -10.0 * np.log10(mse)  # range 1 -> 10 log10(1 / mse); inf if exact


def _chunked(func, n, *arrays):
    """Apply ``func`` to consecutive sample chunks of ``arrays`` and concatenate."""
    out = []
    for start in range(0, n, _CHUNK):
        sl = slice(start, start + _CHUNK)
        out.append(func(*(a[sl] if a is not None else None for a in arrays)))
    if isinstance(out[0], tuple):
        return tuple(
            None if out[0][i] is None else np.concatenate([o[i] for o in out])
            for i in range(len(out[0]))
        )
    return np.concatenate(out)
