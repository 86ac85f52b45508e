"""The signal subspace of the data, for the start of the iterations.

An evoked response has a few spatial patterns (one per active region) that
last many samples, while sensor noise spreads over all channels. Projecting
the data onto their leading spatial singular vectors before a linear inverse
therefore removes most of the noise of each sample: for one source and
white noise the sLORETA estimate of the projected data peaks at the source
almost always, where the estimate of the raw data misses by a few mm at
5 dB.

How many patterns to keep is decided by the optimal hard threshold of
Gavish & Donoho (2014) for an unknown noise level, applied to the data after
a temporal whitening filter (an autoregressive model fitted to the data
outside their leading patterns): the threshold assumes noise that is white in
time, and EEG noise is not (MNE's ``add_noise`` example filter, pink and
brain noise).

Every step is even in the data except the final projection, so the result
is odd (``-y`` gives the negated projection) and scale-equivariant.
"""

import torch
from mne.utils import _validate_type

from .._docs import fill_doc

#: spatial components left out when the noise's temporal model is fitted
#: (at most a quarter of them): the signal lives in the leading few
NOISE_SKIP = 8
#: order of the autoregressive whitening filter
AR_ORDER = 2
#: fewest samples (after the whitening filter) a subspace is estimated from
MIN_TIMES = 8
#: most sources of the subspace scan
MAX_SOURCES = 4


def _threshold_factor(beta):
    """Gavish-Donoho ``omega(beta)``: the hard threshold over the median singular value.

    ``beta`` is the aspect ratio (<= 1) of the matrix. Their polynomial
    approximation (eq. 5 of the reference), within 0.02 of the exact value.
    """
    return 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43


def _ar_coefficients(series, order):
    """Yule-Walker fit of one AR(order) model to (batch, n_series, n_times)."""
    n_times = series.shape[-1]
    acov = torch.stack(
        [
            (series[..., lag:] * series[..., : n_times - lag]).sum((-2, -1))
            for lag in range(order + 1)
        ],
        dim=-1,
    )
    idx = torch.arange(order, device=series.device)
    toeplitz = acov[:, (idx[:, None] - idx[None, :]).abs()]
    # a little ridge keeps the solve finite for noiseless (rank-deficient) data
    ridge = 1e-10 * acov[:, :1, None] + torch.finfo(series.dtype).tiny
    eye = torch.eye(order, dtype=series.dtype, device=series.device)
    return torch.linalg.solve(toeplitz + ridge * eye, acov[:, 1:, None])[..., 0]


def _whiten_in_time(y, coef):
    """Prediction residual ``y[t] - sum_k coef_k y[t - k]`` of (batch, n_ch, T)."""
    order, n_times = coef.shape[-1], y.shape[-1]
    out = y[..., order:].clone()
    for k in range(1, order + 1):
        out = out - coef[:, k - 1, None, None] * y[..., order - k : n_times - k]
    return out


def _signal_patterns(data):
    """Leading left singular vectors of the whitened data and which to keep.

    ``data`` is (batch, n_channels, n_times) float64 with at least
    ``MIN_TIMES + AR_ORDER`` samples; returns ``u`` (batch, n_channels, q) and
    the boolean ``keep`` (batch, q), true for the first ``k >= 1`` columns.
    """
    _, sv, vh = torch.linalg.svd(data, full_matrices=False)
    skip = min(NOISE_SKIP, sv.shape[-1] // 4)
    noise = sv[:, skip:, None] * vh[:, skip:]
    white = _whiten_in_time(data, _ar_coefficients(noise, AR_ORDER))
    u, sv, _ = torch.linalg.svd(white, full_matrices=False)
    beta = min(white.shape[1:]) / max(white.shape[1:])
    tau = _threshold_factor(beta) * sv.median(dim=-1).values
    keep = sv > tau[:, None]
    keep[:, 0] = True
    return u, keep


def _check_data(y):
    _validate_type(y, torch.Tensor, "y")
    if y.ndim != 3:
        raise ValueError(
            f"y must be 3-D (batch, n_channels, n_times), got {tuple(y.shape)}."
        )
    return y.shape[2] >= MIN_TIMES + AR_ORDER and y.shape[1] >= 2


def signal_subspace(y, *, return_rank=False):
    """Project data onto their signal subspace.

    Parameters
    ----------
    y : torch.Tensor, shape (batch, n_channels, n_times)
        Data (any reference), on any device.
    return_rank : bool
        Also return the number of spatial patterns kept per sample.

    Returns
    -------
    y_signal : torch.Tensor, shape (batch, n_channels, n_times)
        ``U_k U_k' y``, with ``U_k`` the leading ``k`` left singular vectors of
        the temporally whitened data (``k >= 1``); ``y`` itself (a copy) for
        epochs with fewer than ``MIN_TIMES + AR_ORDER`` samples. Same dtype as
        ``y``; computed in float64.
    rank : torch.Tensor of int, shape (batch,)
        Only if ``return_rank``: ``k`` per sample.

    Notes
    -----
    1. An AR(2) model is fitted (Yule-Walker) to the time courses of the data
       outside their leading ``min(8, q / 4)`` spatial singular components
       (``q = min(n_channels, n_times)``), which are noise whatever the
       signal's rank up to 8; the data are whitened in time by its
       prediction-error filter.
    2. ``k`` counts the singular values of the whitened data above
       ``omega(beta) * median``, the optimal hard threshold for white noise of
       unknown level (Gavish & Donoho 2014), ``beta`` the matrix's aspect
       ratio; at least one pattern is kept.
    3. The projector onto those ``k`` spatial patterns is applied to the
       original (unwhitened) data.

    References
    ----------
    .. [1] Gavish M, Donoho DL (2014). The optimal hard threshold for singular
           values is 4/sqrt(3). IEEE Trans Inf Theory 60(8):5040-5053.
    """
    if not _check_data(y):
        rank = torch.full((y.shape[0],), min(y.shape[1:]), device=y.device)
        return (y.clone(), rank) if return_rank else y.clone()
    data = y.to(torch.float64)
    u, keep = _signal_patterns(data)
    u_k = u * keep[:, None, :].to(u.dtype)
    out = (u_k @ (u_k.transpose(1, 2) @ data)).to(y.dtype)
    return (out, keep.sum(-1)) if return_rank else out


@fill_doc
def subspace_scan(y, L, *, max_sources=MAX_SOURCES, return_subspace=False):
    """Sparse estimate: one source per signal pattern, found by RAP-MUSIC.

    Parameters
    ----------
    %(y_L)s
    max_sources : int
        Most sources per sample.
    return_subspace : bool
        Also return what :func:`signal_subspace` returns with
        ``return_rank=True`` (computed once here, reused by the start gate).

    Returns
    -------
    x : torch.Tensor, shape (batch, n_sources, n_times)
        Zero except at ``min(k, max_sources)`` sources per sample, ``k`` the
        rank of :func:`signal_subspace`; their time courses are the least
        squares fit of the projected data ``U_k U_k' y``. Dtype of ``y``.
    subspace : tuple of torch.Tensor
        Only if ``return_subspace``: ``(y_signal, rank)``.

    Notes
    -----
    Recursively applied and projected MUSIC (Mosher & Leahy 1999) for
    fixed-orientation sources: source ``i`` maximises the subspace
    correlation of ``Q l_j`` with ``Q U_k``, ``Q`` the projector out of the
    leadfield columns already found. For one source and little noise it is
    the source; for a few it does not suffer the cross-talk of a linear
    estimate's peak. Extended patches are not sparse: the gated start weighs
    this estimate against the prior's output. Odd and scale-equivariant in
    ``y``.

    References
    ----------
    .. [1] Mosher JC, Leahy RM (1999). Source localization using recursively
           applied and projected (RAP) MUSIC. IEEE Trans Signal Process
           47(2):332-340.
    """
    y_signal = y.to(torch.float64)
    if not _check_data(y):
        rank = torch.full((y.shape[0],), min(y.shape[1:]), device=y.device)
        n_found = torch.ones_like(rank)
        patterns = torch.linalg.svd(y_signal, full_matrices=False)[0][..., :1]
    else:
        u, keep = _signal_patterns(y_signal)
        u_k = u * keep[:, None, :].to(u.dtype)
        y_signal = u_k @ (u_k.transpose(1, 2) @ y_signal)
        rank = keep.sum(-1)
        n_found = rank.clamp(max=int(max_sources))
        patterns = u_k[..., : int(max_sources)]
    x = _scan(y_signal, L.to(torch.float64), patterns, n_found).to(y.dtype)
    return (x, (y_signal.to(y.dtype), rank)) if return_subspace else x


def _scan(y_signal, L, patterns, n_found):
    """RAP-MUSIC picks and their least-squares time courses (float64)."""
    batch, n_ch, n_times = y_signal.shape
    rows = torch.arange(batch, device=L.device)
    eye = torch.eye(n_ch, dtype=L.dtype, device=L.device)
    out_of_found = eye.expand(batch, n_ch, n_ch)
    picks = torch.zeros(batch, 0, dtype=torch.long, device=L.device)
    taken = torch.zeros(batch, L.shape[1], dtype=torch.bool, device=L.device)
    for _ in range(int(n_found.max())):  # the one host sync: a loop length
        basis, sv, _ = torch.linalg.svd(out_of_found @ patterns, full_matrices=False)
        # only the directions the kept patterns span (zero ones are arbitrary)
        basis = basis * (sv > 1e-8 * sv[:, :1])[:, None, :].to(L.dtype)
        rest = out_of_found @ L  # (batch, n_ch, n_sources)
        score = (basis.transpose(1, 2) @ rest).norm(dim=1)
        score = score / (rest.norm(dim=1) + torch.finfo(L.dtype).tiny)
        pick = score.masked_fill(taken, -1.0).argmax(1)
        taken[rows, pick] = True
        picks = torch.cat([picks, pick[:, None]], 1)
        columns, _ = torch.linalg.qr(L.T[picks].transpose(1, 2))
        out_of_found = eye - columns @ columns.transpose(1, 2)
    used = torch.arange(picks.shape[1], device=L.device)[None] < n_found[:, None]
    gains = L.T[picks].transpose(1, 2) * used[:, None, :].to(L.dtype)
    amps = torch.linalg.pinv(gains, rtol=1e-6) @ y_signal  # (batch, n_picks, T)
    x = y_signal.new_zeros(batch, L.shape[1], n_times)
    return x.scatter_add(1, picks[..., None].expand(-1, -1, n_times), amps)
