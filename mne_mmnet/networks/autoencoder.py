"""SoftReLU convolutional autoencoder prior of MM-Net and its certified norms.

The prior ``Phi`` of eq. (8) is an N-layer network with ``z_1 = x``,
``a_l = softrelu(z_l)`` and ``z_{l+1} = W_l a_l + b_l``; ``Phi(x) = z_{N+1}``.
Sources are channels and every ``W_l`` is a 1-D convolution along time with
zero "same" padding, so one model serves any number of time samples.

The curvature bound of Proposition 1 needs **upper** bounds of the operator
norms ``||W_l||_2``. They are computed here from the convolution's symbol
(see :func:`conv_operator_norm`) and cached per model until a weight changes.
"""

import math
import threading

import torch
from mne.utils import _validate_type
from torch import nn

from .._activations import softrelu, softrelu_grad, softrelu_hess  # noqa: F401
from ..utils import _torch_generator

# relative inflation that absorbs float64 rounding in the certified norms
_ROUNDING_SLACK = 1e-9
# the norm cache is shared by threads that run one model (module-level: a
# lock attribute would not survive copy.deepcopy of the module)
_NORM_LOCK = threading.RLock()


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


def _max_gram_eig(grams, omegas, chunk=4):
    """Certified upper bound of ``max_w lambda_max(P(w))`` over the frequencies.

    For each chunk of frequencies, a lower estimate from block power iteration
    is inflated by 0.1 % and proved an upper bound by Cholesky factorisations
    (:func:`_certify_below`; the inflation grows if the proof fails). This
    costs a fraction of full eigendecompositions; the bound is at most 0.1 %
    (in the squared norm) above the exact maximum when the estimate converged.
    """
    if len(grams) == 1:  # one tap: P = G_0 at every frequency
        omegas = omegas[:1]
    n = grams[0].shape[0]
    bound = 0.0
    for start in range(0, len(omegas), chunk):
        mats = _symbols(grams, omegas[start : start + chunk])
        estimate = max(float(_power_estimate(mats).max()), 1e-300)
        for margin in (1e-3, 4e-3, 1.6e-2, 6.4e-2, 0.256, 1.0):
            if _certify_below(mats, estimate * (1 + margin)):
                bound = max(bound, estimate * (1 + margin))
                break
        else:  # a poor estimate: take the exact spectra
            top = float(torch.linalg.eigvalsh(mats)[:, -1].max().clamp_min(0))
            bound = max(bound, top * (1 + 64 * n * _UNIT_ROUNDOFF))
    return torch.tensor(bound, dtype=torch.float64)


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
    """Return True if ``lambda_max(A) < mu`` is proved for every matrix ``A``.

    ``mu I - A`` is positive definite exactly when ``lambda_max(A) < mu``.
    A floating-point Cholesky factorisation of ``B = mu I - A - c I`` that
    succeeds gives ``R^H R = B - c I + E`` with
    ``||E||_2 <= gamma_{n+1} n tr(B)`` (Demmel, 1989;
    ``gamma_m = m u / (1 - m u)``, ``u`` the unit roundoff), so the shift
    ``c = 2 gamma_{n+1} n tr(B)`` (doubled again for complex arithmetic)
    makes ``B = R^H R + (c I - E)`` positive definite.
    """
    n = mats.shape[-1]
    eye = torch.eye(n, dtype=mats.dtype, device=mats.device)
    shifted = mu * eye - mats
    trace = torch.diagonal(shifted, dim1=-2, dim2=-1).real.sum(-1).clamp_min(0)
    gamma = (n + 1) * 2 * _UNIT_ROUNDOFF
    gamma /= 1 - gamma
    c = 4 * gamma * n * trace
    _, info = torch.linalg.cholesky_ex(shifted - c[:, None, None] * eye)
    return bool((info == 0).all())


def conv_operator_norm(weight, n_times=None, *, n_grid=1024):
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
        ``2 n_grid`` samples, 2,045 for kernel 3 by default).

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

    The largest eigenvalue of ``P(w)`` at each frequency is not computed by a
    full eigendecomposition (minutes for 1,000-channel layers) but bounded:
    block power iteration gives an estimate from below, which, inflated by
    0.1 %, is proved to lie above the spectrum by a Cholesky factorisation
    with a shift covering its rounding errors (the inflation grows if the
    proof fails). The squared norm is thus at most 0.1 % (the norm 0.05 %)
    above the maximum over the grid when the estimate converged. Everything
    is computed in float64 and inflated by ``1e-9`` relative to absorb the
    rounding of the Gram matrices.
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


class SoftReLUAutoencoder(nn.Module):
    """N-layer SoftReLU convolutional autoencoder used as the MM-Net prior.

    Parameters
    ----------
    n_sources : int
        Number of sources (input and output channels).
    hidden : tuple of int
        Channels of the hidden layers; ``len(hidden) + 1`` convolutions.
    kernel_size : int
        Odd temporal kernel size ("same" zero padding).
    eps : float
        SoftReLU smoothing ``eps > 0``; ``softrelu'' <= 1 / (2 eps)``.
    seed : int | None
        Seed of the weight initialisation (``None``: torch's global RNG).
    odd : bool
        Use the odd part ``(N(x) - N(-x)) / 2`` of the network ``N`` as
        ``Phi``, so that ``Phi(-x) = -Phi(x)`` exactly and the prior term of
        the energy is even: the whole solver is then sign-equivariant (a
        source of either polarity is treated alike). Costs two passes.

    Notes
    -----
    The layout follows Appendix B of Tran et al. (2026): ``z_1 = x``,
    ``a_l = softrelu(z_l)``, ``z_{l+1} = W_l a_l + b_l`` for ``l = 1..N`` and
    ``Phi(x) = z_{N+1}`` (the activation is applied to the input, the output
    layer is linear). Inputs have shape (batch, n_sources, n_times) for any
    ``n_times >= 1``. The solver feeds the prior unit-RMS inputs (see
    :func:`mne_mmnet.solver.normalize_sources`), so train it on that scale.
    """

    def __init__(
        self,
        n_sources=994,
        hidden=(256, 128, 256),
        *,
        kernel_size=3,
        eps=0.5,
        seed=None,
        odd=False,
    ):
        super().__init__()
        _validate_type(n_sources, "int-like", "n_sources")
        _validate_type(kernel_size, "int-like", "kernel_size")
        _validate_type(eps, "numeric", "eps")
        hidden = tuple(int(h) for h in hidden)
        if int(n_sources) < 1 or any(h < 1 for h in hidden):
            raise ValueError(
                f"n_sources and hidden sizes must be >= 1, got {n_sources} and "
                f"{hidden}."
            )
        if int(kernel_size) < 1 or int(kernel_size) % 2 != 1:
            raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}.")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}.")
        self.n_sources = int(n_sources)
        self.hidden = hidden
        self.kernel_size = int(kernel_size)
        self.eps = float(eps)
        _validate_type(odd, bool, "odd")
        self.odd = odd
        channels = (self.n_sources, *hidden, self.n_sources)
        self.layers = nn.ModuleList(
            nn.Conv1d(c_in, c_out, self.kernel_size, padding=self.kernel_size // 2)
            for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        if seed is not None:
            self._reset_parameters(_torch_generator(seed))
        self._norm_cache = {}

    @torch.no_grad()
    def _reset_parameters(self, generator):
        # torch's Conv1d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both
        for conv in self.layers:
            bound = 1.0 / math.sqrt(conv.in_channels * conv.kernel_size[0])
            for param in (conv.weight, conv.bias):
                param.uniform_(-bound, bound, generator=generator)

    @property
    def conv_layers(self):
        """The convolutions ``W_1 .. W_N`` as a list."""
        return list(self.layers)

    def forward(self, x):
        """Return ``Phi(x)`` for ``x`` of shape (batch, n_sources, n_times)."""
        z = torch.cat([x, -x]) if self.odd else x
        for conv in self.layers:
            z = conv(softrelu(z, self.eps))
        return self._fold(z)

    def _fold(self, out):
        """Odd part ``(N(x) - N(-x)) / 2`` from the stacked passes (if odd)."""
        if not self.odd:
            return out
        half = out.shape[0] // 2
        return 0.5 * (out[:half] - out[half:])

    def forward_with_preactivations(self, x):
        """Return ``Phi(x)`` and the pre-activations ``[z_1, ..., z_N]``.

        ``z_1 = x`` and ``z_l`` is the input of the l-th SoftReLU.
        """
        phi, pre, _ = self.forward_with_activations(x)
        return phi, pre

    def forward_with_activations(self, x):
        """Return ``Phi(x)``, pre-activations ``[z_l]`` and activations ``[a_l]``.

        The solver's energy, gradient and curvature bound reuse these (one
        forward pass per iterate). For an odd prior, pre-activations and
        activations stack the passes on ``x`` and on ``-x`` (2 x batch rows).
        """
        z = torch.cat([x, -x]) if self.odd else x
        pre, acts = [], []
        for conv in self.layers:
            pre.append(z)
            acts.append(softrelu(z, self.eps))
            z = conv(acts[-1])
        return self._fold(z), pre, acts

    def operator_norms(self, n_times=None, *, refresh=0.01):
        """Certified upper bounds of ``||W_l||_2``, one per layer (float64 tensor).

        Parameters
        ----------
        n_times : int | None
            Signal length; ``None`` gives bounds valid for every length.
        refresh : float
            Relative slack after which a layer's norm is recomputed from
            scratch (see Notes); 0 recomputes on every weight change.

        Returns
        -------
        norms : torch.Tensor, shape (n_layers,)
            On the CPU. Cached until a weight changes (keyed on each weight's
            storage and in-place version counter).

        Notes
        -----
        Each layer keeps a reference copy ``W_ref`` of its weights and the
        certified norm of :func:`conv_operator_norm` at ``W_ref``. After the
        weights change (e.g. an optimiser step) the bound is updated with the
        triangle inequality, ``||W|| <= ||W_ref|| + sum_t ||W_t - W_ref,t||_F``
        (a convolution's norm is at most the sum of its taps' norms), which
        is still certified and costs one pass over the weights; once that
        slack exceeds ``refresh`` times the reference norm, the norm is
        recomputed and the reference reset.
        """
        with _NORM_LOCK:
            return self._operator_norms(n_times, refresh)

    def _operator_norms(self, n_times, refresh):
        versions = tuple(
            (c.weight.data_ptr(), c.weight._version, c.weight.device)
            for c in self.layers
        )
        key = None if n_times is None else int(n_times)
        entry = self._norm_cache.get(key)
        if entry is not None and entry["versions"] == versions:
            return entry["norms"]
        if entry is None:
            if len(self._norm_cache) > 16:
                self._norm_cache.clear()
            entry = {"refs": [None] * len(self.layers)}
            self._norm_cache[key] = entry
        norms = []
        for idx, conv in enumerate(self.layers):
            weight = conv.weight.detach()
            ref = entry["refs"][idx]
            if ref is not None and ref[0].shape == weight.shape:
                delta = (weight.to(torch.float64) - ref[0]).flatten(0, 1)
                slack = float(torch.linalg.vector_norm(delta, dim=0).sum())
                if slack <= refresh * ref[1]:
                    norms.append(ref[1] + slack * (1 + _ROUNDING_SLACK))
                    continue
            norm = conv_operator_norm(weight, n_times)
            entry["refs"][idx] = (weight.to(torch.float64).clone(), norm)
            norms.append(norm)
        entry["versions"] = versions
        entry["norms"] = torch.tensor(norms, dtype=torch.float64)
        return entry["norms"]
