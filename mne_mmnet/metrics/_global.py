"""Global localisation error: the peak a user sees, anywhere in the hemisphere."""

import numpy as np

from ._checks import _check_pair, _check_positions, _check_seeds


def _hemisphere_masks(n_sources, n_left):
    left = np.arange(n_sources) < n_left
    return np.stack([left, ~left])  # (2, n_sources)


def global_localization_error(estimate, ground_truth, *, seeds, positions, n_left=None):
    """Distance (mm) from each seed to the largest estimate in its hemisphere.

    Parameters
    ----------
    estimate, ground_truth : array-like
        Estimated and true sources, shape (n_samples, n_sources, n_times).
    seeds : array of int, shape (n_samples, max_seeds) | (n_samples,)
        Patch-centre indices, padded with -1.
    positions : array, shape (n_sources, 3)
        Source positions in metres.
    n_left : int | None
        Number of left-hemisphere sources (they come first); ``None`` takes
        half of the sources (the template: 497 of 994).

    Returns
    -------
    le : ndarray, shape (n_samples,)
        For each seed ``s``, with ``t_s = argmax_t |J[s, t]|``, the distance
        ``1000 ||r[s] - r[argmax_{i in hemi(s)} |J_hat[i, t_s]|]||``, averaged
        over the seeds of each sample.

    Notes
    -----
    Unlike :func:`localization_error`, which searches only an order-5
    neighbourhood of the seed, this is the error of the map's maximum in the
    seed's hemisphere: a spurious peak far from the source counts in full.
    """
    estimate, ground_truth = _check_pair(estimate, ground_truth)
    n, n_sources, _ = estimate.shape
    seeds = _check_seeds(seeds, n, n_sources)
    positions = _check_positions(positions, n_sources)
    n_left = n_sources // 2 if n_left is None else int(n_left)
    hemis = _hemisphere_masks(n_sources, n_left)
    out = np.empty(n)
    for k in range(n):
        errors = []
        for s in seeds[k][seeds[k] >= 0]:
            t_ref = np.abs(ground_truth[k, s]).argmax()
            score = np.where(hemis[int(s >= n_left)], np.abs(estimate[k, :, t_ref]), -1)
            errors.append(
                1e3 * np.linalg.norm(positions[s] - positions[score.argmax()])
            )
        out[k] = np.mean(errors)
    return out
