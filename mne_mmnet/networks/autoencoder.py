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
from torch.nn import functional as F

from .._activations import softrelu, softrelu_grad, softrelu_hess
from ..utils import _torch_generator
from ._conv_norms import (  # noqa: F401  (the norms' home; re-exported here)
    _ROUNDING_SLACK,
    N_GRID,
    _certify_below,
    _max_gram_eig,
    _symbols,
    _tap_grams,
    conv_operator_norm,
    taps_norm_bound,
)
from ._expansions import TaylorExpansions

# the norm cache is shared by threads that run one model (module-level: a
# lock attribute would not survive copy.deepcopy of the module)
_NORM_LOCK = threading.RLock()


def _change_bound(delta, allowed):
    """Certified bound of the norm of the weight change ``delta``.

    The sum of the taps' Frobenius norms (one pass) where it is within
    ``allowed``, else the tighter sum of their spectral norms.
    """
    frobenius = float(torch.linalg.vector_norm(delta.flatten(0, 1), dim=0).sum())
    if frobenius <= allowed:
        return frobenius * (1 + _ROUNDING_SLACK)
    return taps_norm_bound(delta)


class SoftReLUAutoencoder(TaylorExpansions, nn.Module):
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
        #: bound the norms at ``n_times`` rounded up to a power of two (training)
        self.round_norm_lengths = False

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

    def jacobian_norm_bound(self, layer_norms):
        """Bound of ``||J_Phi||_2`` at every input: ``prod_l ||W_l||_2``.

        ``layer_norms`` are bounds of the layer norms (:meth:`operator_norms`);
        ``softrelu' <= 1``. For an odd prior, ``J_Phi`` is the mean of two
        Jacobians of the network, with the same bound.
        """
        return torch.prod(layer_norms)

    def hessian_norm_bound(self, layer_norms):
        """Bound of ``||sum_i w_i Hess Phi_i||_2`` at every input, per unit ``|w|``.

        ``sum_l (prod_{k<l} ||W_k||^2) (prod_{k>=l} ||W_k||) / (2 eps)``: the
        layer-by-layer chain rule with ``|softrelu''| <= 1 / (2 eps)``.
        """
        prefix = torch.cumprod(
            torch.cat([layer_norms.new_ones(1), layer_norms[:-1] ** 2]), 0
        )
        suffix = torch.flip(torch.cumprod(torch.flip(layer_norms, [0]), 0), [0])
        return (prefix * suffix).sum() / (2.0 * self.eps)

    def residual_curvature_bound(self, pre, w, layer_norms, *, vectors=None):
        """Bound of ``||sum_i w_i Hess Phi_i(z)||_2`` at one point, per sample.

        Appendix B, eq. (21) of :footcite:t:`TranEtAl2026`:
        ``sum_l (prod_{k<l} ||W_k||^2) || v_l * softrelu''(z_l) ||_inf`` with
        ``v_l = d(w . Phi) / d a_l`` back-propagated through the transposed
        convolutions.

        Parameters
        ----------
        pre : list of torch.Tensor
            Pre-activations at ``z`` (:meth:`forward_with_preactivations`;
            both passes stacked for an odd prior).
        w : torch.Tensor, shape (batch, n_sources, n_times)
            The contracting vector.
        layer_norms : torch.Tensor, shape (n_layers,)
            Bounds of the layer norms, on the device and dtype of ``w``.
        vectors : list of torch.Tensor | None
            The ``v_l`` when already back-propagated (e.g. from a gradient
            pass); ``w`` is then unused.

        Returns
        -------
        bound : torch.Tensor, shape (batch,)

        References
        ----------
        .. footbibliography::
        """
        if vectors is None:
            vectors = self._residual_vectors(pre, w)
        prefix = torch.cumprod(
            torch.cat([layer_norms.new_ones(1), layer_norms[:-1] ** 2]), 0
        )
        residual = pre[0].new_zeros(pre[0].shape[0])
        for layer, (z_l, v_l) in enumerate(zip(pre, vectors)):
            peak = (v_l * softrelu_hess(z_l, self.eps)).abs().flatten(1).amax(1)
            residual = residual + prefix[layer] * peak
        if self.odd:
            # w' Hess(Phi) = (w' Hess N(z) - w' Hess N(-z)) / 2: the two
            # passes' bounds (each carrying its 1/2) add up
            half = residual.shape[0] // 2
            residual = residual[:half] + residual[half:]
        return residual

    def _residual_vectors(self, pre, w):
        """``d(w . Phi) / d a_l`` for every layer, through the transposed layers."""
        if self.odd:  # Phi = (N(z) - N(-z)) / 2: each pass sees w / 2 (up to sign)
            w = 0.5 * torch.cat([w, -w])
        convs = self.layers
        vectors = [None] * len(convs)
        v = F.conv_transpose1d(w, convs[-1].weight, padding=convs[-1].padding[0])
        for layer in range(len(convs) - 1, -1, -1):
            vectors[layer] = v
            if layer > 0:
                conv = convs[layer - 1]
                v = F.conv_transpose1d(
                    softrelu_grad(pre[layer], self.eps) * v,
                    conv.weight,
                    padding=conv.padding[0],
                )
        return vectors

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
        triangle inequality, ``||W|| <= ||W_ref|| + sum_t ||W_t - W_ref,t||_2``
        (a convolution's norm is at most the sum of its taps' spectral norms,
        each certified by ``taps_norm_bound`` of ``networks._conv_norms``),
        which costs one small factorisation per tap; once that slack exceeds
        ``refresh`` times the reference norm, the norm is recomputed and the
        reference reset.

        With :attr:`round_norm_lengths` set (training on windows of many
        lengths), ``n_times`` is rounded up to a power of two: the norm of a
        zero-padded convolution never decreases with the length (the shorter
        one is a restriction of the longer), so the bound stays certified and
        a few cached entries, updated after each step, serve every length.
        """
        with _NORM_LOCK:
            return self._operator_norms(n_times, refresh)

    def _operator_norms(self, n_times, refresh):
        versions = tuple(
            (c.weight.data_ptr(), c.weight._version, c.weight.device)
            for c in self.layers
        )
        key = None if n_times is None else int(n_times)
        if key is not None and self.round_norm_lengths:
            key = 1 << (key - 1).bit_length()
        shortest = min(c.weight.shape[-1] for c in self.layers)
        if key is not None and (key + shortest - 1) // 2 > N_GRID:
            key = None  # every layer takes its length-independent bound
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
                slack = _change_bound(weight.to(torch.float64) - ref[0],
                                      refresh * ref[1])  # fmt: skip
                if slack <= refresh * ref[1]:
                    norms.append(ref[1] + slack * (1 + _ROUNDING_SLACK))
                    continue
            norm = conv_operator_norm(weight, key)
            entry["refs"][idx] = (weight.to(torch.float64).clone(), norm)
            norms.append(norm)
        entry["versions"] = versions
        entry["norms"] = torch.tensor(norms, dtype=torch.float64)
        return entry["norms"]
