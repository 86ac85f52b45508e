"""Certified upper bounds of the operator norms of 1-D convolutions.

The curvature bound of Proposition 1 needs **upper** bounds of the layer
norms ``||W_l||_2`` of the prior. A zero-padded convolution's norm is the
largest singular value of its symbol over the DFT frequencies
(:func:`conv_operator_norm`); each frequency's largest eigenvalue is bounded
from below by block power iteration and proved an upper bound by a shifted
Cholesky factorisation, with every rounding error accounted for.
"""

import math

import torch
from mne.utils import _validate_type

# relative inflation that absorbs float64 rounding in the certified norms
_ROUNDING_SLACK = 1e-9
#: frequency grid of the length-independent bound (intervals on [0, pi])
N_GRID = 1024


def _tap_grams(weight):
    """Lag matrices ``G_d = sum_{t - s = d} W_s^T W_t`` (or ``W_t W_s^T``).

    The Gram matrix of the symbol is then ``sum_d G_d exp(-i w d)``; the
    smaller of the two channel dimensions is used.
    """
    k = weight.shape[-1]
    taps = weight.permute(2, 0, 1)  # (k, out, in)
    if taps.shape[1] < taps.shape[2]:
        taps = taps.transpose(1, 2)  # Gram of W W^T has the same spectrum
    grams = {}
    for d in range(k):
        grams[d] = sum(taps[s].T @ taps[s + d] for s in range(k - d))
    return grams


def _symbols(grams, omegas):
    """Build the Hermitian ``P(w) = sum_{|d| < k} G_d exp(-i w d)``, one per ``w``.

    With ``G_{-d} = G_d^T``: ``Re P = G_0 + sum_d cos(w d) (G_d + G_d^T)`` and
    ``Im P = -sum_d sin(w d) (G_d - G_d^T)``.
    """
    if len(grams) == 1:
        g0 = grams[0].to(torch.complex128)
        return g0.expand(len(omegas), *g0.shape).clone()
    lags = torch.arange(1, len(grams), dtype=torch.float64, device=omegas.device)
    angle = omegas[:, None] * lags  # (n_w, k - 1)
    sym = torch.stack([grams[d] + grams[d].T for d in range(1, len(grams))])
    skew = torch.stack([grams[d] - grams[d].T for d in range(1, len(grams))])
    real = grams[0] + torch.einsum("wd,dij->wij", torch.cos(angle), sym)
    imag = -torch.einsum("wd,dij->wij", torch.sin(angle), skew)
    return torch.complex(real, imag)


def _max_gram_eig(grams, omegas, chunk=4, *, coarse=9, tol=1e-3):
    """Certified upper bound of ``max_w lambda_max(P(w))`` over sorted ``omegas``.

    ``omegas`` are sorted frequencies in ``[0, pi]`` starting at 0. Not every
    frequency needs a factorisation: with certified values ``U`` at evaluated
    frequencies, Bernstein's inequality for the degree-``n`` trigonometric
    polynomials ``v^H P(w) v`` bounds ``lambda_max`` between two evaluated
    frequencies ``h`` apart by ``max(U_a, U_b) + n S h / 2``, where
    ``S = sup_w lambda_max(P(w)) <= max_gaps max(U_a, U_b) / (1 - n h / 2)``
    (the last gap reaches ``pi``, mirrored: ``lambda_max(P(-w)) =
    lambda_max(P(w))``). Starting from ``coarse`` evenly spread frequencies,
    gaps whose bound exceeds ``(1 + tol)`` times the largest value found are
    bisected until none is left; the result is the larger of that value and
    the remaining gaps' bounds, so at most ``tol`` (relative) above the
    maximum of the evaluated frequencies. Each evaluation: a lower estimate
    from block power iteration inflated by 0.1 % and proved an upper bound by
    a Cholesky factorisation (:func:`_certify_below`; the inflation grows if
    the proof fails).
    """
    omegas = omegas.to(torch.float64)
    if len(grams) == 1:  # one tap: P = G_0 at every frequency
        omegas = omegas[:1]
    degree = len(grams) - 1
    n_w = len(omegas)
    values = torch.full((n_w,), math.nan, dtype=torch.float64)
    todo = torch.linspace(0, n_w - 1, min(n_w, coarse)).round().long().unique()
    while todo.numel():
        for start in range(0, todo.numel(), chunk):
            idx = todo[start : start + chunk]
            mats = _symbols(grams, omegas[idx.to(omegas.device)])
            values[idx] = _certified_tops(mats).cpu()
        todo, bound = _gaps_to_refine(values, omegas.cpu(), degree, tol)
    return torch.tensor(bound, dtype=torch.float64)


def _gaps_to_refine(values, omegas, degree, tol):
    """Midpoints of the gaps whose Bernstein bound is not yet within ``tol``.

    Returns the frequencies to evaluate next and the current certified bound
    of the maximum over all ``omegas`` (valid once none is left).
    """
    done = torch.nonzero(~torch.isnan(values)).flatten()
    top = float(values[done].max().clamp_min(1e-300))
    if degree == 0 or done.numel() == len(values):
        return done[:0], top
    left, right = done[:-1], done[1:]
    pair = torch.maximum(values[left], values[right])
    width = omegas[right] - omegas[left]
    # the gap from the last evaluated frequency to pi, mirrored
    last = done[-1]
    pair = torch.cat([pair, values[last : last + 1]])
    width = torch.cat([width, 2 * (math.pi - omegas[last : last + 1])])
    factor = 1 - degree * width / 2
    sup = float((pair / factor).max()) if bool((factor > 0).all()) else math.inf
    gap_bound = pair + degree * sup * width / 2
    # gaps that hold frequencies not yet evaluated
    inner = torch.cat([right - left > 1, (last < len(values) - 1).reshape(1)])
    open_gap = inner & (gap_bound > top * (1 + tol))
    if not bool(open_gap.any()):
        bound = max(top, float(gap_bound[inner].max())) if bool(inner.any()) else top
        return done[:0], bound
    ends = torch.cat([right, torch.tensor([len(values)])])
    starts = torch.cat([left, last.reshape(1)])
    mids = (starts + ends) // 2  # the mirrored gap's far end is pi
    return mids[open_gap].unique(), top


def _certified_tops(mats):
    """Certified upper bounds of ``lambda_max`` of each Hermitian matrix."""
    estimate = _power_estimate(mats).clamp_min(1e-300).cpu()
    n = mats.shape[-1]
    tops = torch.full_like(estimate, math.inf)
    for margin in (1e-3, 4e-3, 1.6e-2, 6.4e-2, 0.256, 1.0):
        left = torch.isinf(tops)
        if not bool(left.any()):
            break
        level = estimate[left] * (1 + margin)
        proved = _certify_below(mats[left], level)
        tops[torch.nonzero(left).flatten()[proved]] = level[proved]
    left = torch.isinf(tops)
    if bool(left.any()):  # a poor estimate: take the exact spectra
        exact = torch.linalg.eigvalsh(mats[left])[:, -1].clamp_min(0).cpu()
        tops[left] = exact * (1 + 64 * n * _UNIT_ROUNDOFF)
    return tops


_UNIT_ROUNDOFF = 2.0**-53


def _power_estimate(mats, *, block=4, check_every=4, max_iter=40, rtol=1e-6):
    """Rayleigh-Ritz estimates ``<= lambda_max`` of each Hermitian matrix.

    Block power iteration, stopped once the largest Ritz values change by
    less than ``rtol`` (relative) between checks.
    """
    n = mats.shape[-1]
    if n <= 4 * block:
        return torch.linalg.eigvalsh(mats)[:, -1]
    gen = torch.Generator(device=mats.device).manual_seed(0)
    real = torch.randn(*mats.shape[:-1], block, 2, generator=gen, dtype=torch.float64,
                       device=mats.device)  # fmt: skip
    basis = torch.linalg.qr(torch.view_as_complex(real)).Q
    previous = None
    for it in range(1, max_iter + 1):
        basis = torch.linalg.qr(mats @ basis).Q
        if it % check_every == 0 or it == max_iter:
            ritz = basis.conj().transpose(-2, -1) @ mats @ basis
            top = torch.linalg.eigvalsh(ritz)[:, -1]  # never above lambda_max
            if previous is not None and bool(
                ((top - previous).abs() <= rtol * top.abs().clamp_min(1e-300)).all()
            ):
                break
            previous = top
    return top


def _certify_below(mats, mu):
    """Whether ``lambda_max(A_i) < mu_i`` is proved, per matrix; (batch,) bool.

    ``mu I - A`` is positive definite exactly when ``lambda_max(A) < mu``.
    A floating-point Cholesky factorisation of ``B = mu I - A - c I`` that
    succeeds gives ``R^H R = B - c I + E`` with
    ``||E||_2 <= gamma_{n+1} n tr(B)`` (Demmel, 1989;
    ``gamma_m = m u / (1 - m u)``, ``u`` the unit roundoff), so the shift
    ``c = 2 gamma_{n+1} n tr(B)`` (doubled again for complex arithmetic)
    makes ``B = R^H R + (c I - E)`` positive definite.
    """
    n = mats.shape[-1]
    mu = mu.to(device=mats.device, dtype=torch.float64)[:, None, None]
    eye = torch.eye(n, dtype=mats.dtype, device=mats.device)
    shifted = mu * eye - mats
    trace = torch.diagonal(shifted, dim1=-2, dim2=-1).real.sum(-1).clamp_min(0)
    gamma = (n + 1) * 2 * _UNIT_ROUNDOFF
    gamma /= 1 - gamma
    c = 4 * gamma * n * trace
    _, info = torch.linalg.cholesky_ex(shifted - c[:, None, None] * eye)
    return (info == 0).cpu()


def conv_operator_norm(weight, n_times=None, *, n_grid=N_GRID):
    """Certified upper bound of the norm of a zero-padded 1-D convolution.

    Parameters
    ----------
    weight : torch.Tensor, shape (out_channels, in_channels, kernel_size)
        Weights of a ``Conv1d`` with odd ``kernel_size`` and "same" padding.
    n_times : int | None
        Signal length ``T``. ``None`` returns a bound valid for every ``T``.
    n_grid : int
        Intervals of the frequency grid on ``[0, pi]`` used for the
        ``T``-independent bound (and for signals longer than about
        ``2 n_grid`` samples: 2,047 for kernel 3 by default).

    Returns
    -------
    norm : float
        An upper bound of ``||W||_2`` for the convolution seen as a linear map
        ``R^{in x T} -> R^{out x T}``.

    Notes
    -----
    A length-``T`` zero-padded convolution with a ``k``-tap kernel is the
    restriction of a circular convolution on ``M >= T + k - 1`` points (pad the
    input with zeros: no output sample wraps around; keep the first ``T``
    outputs). Restriction and zero-padding have norm 1 and the DFT
    block-diagonalises the circular convolution, so its norm is
    ``max_m sigma_max(W_hat(2 pi m / M))`` with the symbol
    ``W_hat(w) = sum_t W_t exp(-i w t)``. When ``M = T + k - 1`` needs no more
    than ``n_grid + 1`` frequencies (a real kernel makes ``m`` and ``M - m``
    equivalent) this maximum is bounded over those frequencies and returned.

    Otherwise a bound valid for every ``T`` is returned. With
    ``P(w) = W_hat(w)^H W_hat(w) = sum_{|d| < k} G_d exp(-i w d)`` and any unit
    vector ``v``, ``p_v(w) = v^H P(w) v`` is a real non-negative trigonometric
    polynomial of degree ``n = k - 1``, so Bernstein's inequality gives
    ``|p_v'| <= n sup p_v <= n S`` with ``S = sup_w lambda_max(P(w))``. Every
    ``w`` lies within ``h / 2`` of a point of the grid of spacing
    ``h = pi / n_grid`` on ``[0, pi]`` (``P(-w) = conj(P(w))``), hence
    ``S <= max_grid + n S h / 2``, i.e. ``S <= max_grid / (1 - n h / 2)``. The
    bound is ``sqrt(S)``, at most ``1 / sqrt(1 - n pi / (2 n_grid))`` above
    the supremum (1.0008 for kernel 3 and the default grid).

    The largest eigenvalue of ``P(w)`` is not computed by a full
    eigendecomposition (minutes for 1,000-channel layers) but bounded: block
    power iteration gives an estimate from below, which, inflated by 0.1 %, is
    proved to lie above the spectrum by a Cholesky factorisation with a shift
    covering its rounding errors (the inflation grows if the proof fails).
    Nor is every frequency factorised: the same Bernstein inequality bounds
    the frequencies between evaluated ones, and only gaps whose bound is more
    than 0.1 % above the largest value found are refined (``_max_gram_eig``;
    for the shipped layers about 17 of the 34 frequencies at ``T = 64`` and
    about 65 of the 1,025 of the grid). The squared norm is thus at most
    0.2 % (the norm 0.1 %) above the maximum over the frequencies when the
    estimates converged. Everything is computed in float64 and inflated by
    ``1e-9`` relative to absorb the rounding of the Gram matrices.
    """
    _validate_type(weight, torch.Tensor, "weight")
    if weight.ndim != 3 or weight.shape[-1] % 2 != 1:
        raise ValueError(
            "weight must have shape (out_channels, in_channels, kernel_size) with "
            f"an odd kernel_size, got shape {tuple(weight.shape)}."
        )
    _validate_type(n_grid, "int-like", "n_grid")
    w = weight.detach().to(torch.float64)
    k = w.shape[-1]
    if n_times is not None:
        _validate_type(n_times, "int-like", "n_times")
        n_times = int(n_times)
        if n_times < 1:
            raise ValueError(f"n_times must be >= 1, got {n_times}.")
    degree = k - 1
    n_grid = max(int(n_grid), degree + 1)
    grams = _tap_grams(w)
    if n_times is not None and (n_times + k - 1) // 2 <= n_grid:
        n_points = n_times + k - 1
        m = torch.arange(n_points // 2 + 1, dtype=torch.float64, device=w.device)
        sq_norm = _max_gram_eig(grams, 2 * math.pi * m / n_points)
    else:
        omegas = torch.linspace(0, math.pi, n_grid + 1, dtype=torch.float64)
        grid_max = _max_gram_eig(grams, omegas.to(w.device))
        sq_norm = grid_max / (1 - degree * (math.pi / n_grid) / 2)
    return math.sqrt(float(sq_norm)) * (1 + _ROUNDING_SLACK)


def taps_norm_bound(delta):
    """Certified upper bound of ``sum_t ||delta_t||_2`` over the taps of a kernel.

    A convolution's norm is at most the sum of the spectral norms of its taps
    (each tap is a shifted, truncated identity in time times ``delta_t``), so
    this bounds the norm of the convolution ``delta`` for every length. It
    is much tighter than the sum of Frobenius norms for the dense, small
    weight changes of an optimiser step and costs one small Gram matrix and
    Cholesky factorisation per tap.

    Parameters
    ----------
    delta : torch.Tensor, shape (out_channels, in_channels, kernel_size)
        Kernel (e.g. a weight change).

    Returns
    -------
    bound : float
    """
    delta = delta.detach().to(torch.float64)
    one = torch.zeros(1, dtype=torch.float64, device=delta.device)
    total = 0.0
    for t in range(delta.shape[-1]):
        tap = delta[..., t]
        if tap.shape[0] < tap.shape[1]:
            tap = tap.T  # the Gram of the smaller side has the same spectrum
        total += math.sqrt(float(_max_gram_eig({0: tap.T @ tap}, one)))
    return total * (1 + _ROUNDING_SLACK)
