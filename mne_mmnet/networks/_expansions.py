"""Expansions of the autoencoder prior along a curve (forward mode).

The solver needs, at a point ``z`` where the prior's pre-activations are
known, how ``Phi`` changes along a curve through ``z``: its first two
derivatives (for the energy's exact curvature along a step direction) and a
first-order expansion with a certified remainder (for a step's segment
majorant). They propagate tangents layer by layer with the convolutions'
weights (no bias) and the SoftReLU's derivatives at the known
pre-activations, so no autograd graph is built. A mixin of
:class:`~mne_mmnet.networks.SoftReLUAutoencoder` (its ``layers``, ``eps``,
``odd`` and ``_fold``).
"""

import torch
from torch.nn import functional as F

from .._activations import softrelu_grad, softrelu_hess


class TaylorExpansions:
    """Forward-mode expansions of a SoftReLU convolutional network.

    The methods :class:`SoftReLUAutoencoder` inherits for the solver's
    directional curvature and segment majorants; they read the network's
    ``layers`` (1-D convolutions), ``eps``, ``odd`` and ``_fold``.
    """

    def second_order_tangents(self, pre, tangent, second):
        """First two derivatives of ``Phi`` along a curve ``z(s)``.

        For ``z(s)`` with ``z(0) = z``, ``z'(0) = t`` and ``z''(0) = t2``:
        every layer maps ``(t, t2)`` of its pre-activation to
        ``W (softrelu'(z) t)`` and ``W (softrelu'(z) t2 + softrelu''(z) t^2)``
        (one convolution for both).

        Parameters
        ----------
        pre : list of torch.Tensor
            Pre-activations at ``z`` (both passes stacked for an odd prior).
        tangent, second : torch.Tensor, shape (batch, n_sources, n_times)
            ``t`` and ``t2``.

        Returns
        -------
        tangents : list of torch.Tensor
            The tangent of each layer's input, as :meth:`segment_tangents`
            returns them (for the same ``t``).
        phi_tangent, phi_second : torch.Tensor
            ``d Phi / ds`` and ``d^2 Phi / ds^2`` at ``s = 0``.
        """
        if self.odd:
            tangent = torch.cat([tangent, -tangent])
            second = torch.cat([second, -second])
        n = tangent.shape[0]
        tangents = []
        for conv, z in zip(self.layers, pre):
            tangents.append(tangent)
            slope = softrelu_grad(z, self.eps)
            stacked = torch.cat(
                [slope * tangent,
                 slope * second + softrelu_hess(z, self.eps) * tangent * tangent]
            )  # fmt: skip
            out = F.conv1d(stacked, conv.weight, padding=conv.padding[0])
            tangent, second = out[:n], out[n:]
        return tangents, self._fold(tangent), self._fold(second)

    def segment_expansion(self, pre, tangent, remainder, lengths, layer_norms):
        """First-order expansion of ``Phi`` along a curve, with a certified remainder.

        For inputs ``z(s) = z + s t + rho(s)`` with ``|rho(s)| <= s^2 R / 2``
        on ``s in [0, l]``, ``Phi(z(s)) = Phi(z) + s J(z) t + rho_Phi(s)`` with
        ``|rho_Phi(s)| <= s^2 R_Phi / 2``. Each layer's remainder is the
        previous one (``softrelu' <= 1``) plus the SoftReLU's second-order
        term, bounded elementwise with the largest ``softrelu''`` over the
        range each pre-activation can reach on the segment, then carried
        through ``||W_l||``. The tangent is exact (forward mode).

        Parameters
        ----------
        pre : list of torch.Tensor
            Pre-activations at ``z`` (both passes stacked for an odd prior;
            :meth:`mne_mmnet.networks.SoftReLUAutoencoder.forward_with_preactivations`).
        tangent : torch.Tensor, shape (batch, n_sources, n_times)
            ``t``.
        remainder : torch.Tensor, shape (batch, n_lengths)
            ``R`` for each segment length.
        lengths : torch.Tensor, shape (batch, n_lengths)
            Segment lengths ``l`` of each sample.
        layer_norms : torch.Tensor, shape (n_layers,)
            Certified bounds of the layer norms, on the device and dtype of
            ``tangent``
            (:meth:`mne_mmnet.networks.SoftReLUAutoencoder.operator_norms`).

        Returns
        -------
        phi_tangent : torch.Tensor, shape (batch, n_sources, n_times)
            ``J(z) t``.
        phi_remainder : torch.Tensor, shape (batch, n_lengths)
            ``R_Phi`` (``inf`` where a remainder overflows).
        """
        tangents, phi_tangent = self.segment_tangents(pre, tangent)
        return phi_tangent, self.segment_remainder(
            pre, tangents, remainder, lengths, layer_norms
        )

    def segment_tangents(self, pre, tangent):
        """Return the tangents of :meth:`segment_expansion` (independent of ``l``).

        The tangent of each layer's input ``[t_1, ..., t_N]`` (both passes
        stacked for an odd prior) and ``J(z) t``: a step is bounded for
        several sets of lengths with one forward-mode pass.
        """
        if self.odd:
            tangent = torch.cat([tangent, -tangent])
        tangents = []
        for conv, z in zip(self.layers, pre):
            tangents.append(tangent)
            tangent = F.conv1d(
                softrelu_grad(z, self.eps) * tangent, conv.weight,
                padding=conv.padding[0],
            )  # fmt: skip
        return tangents, self._fold(tangent)

    def segment_remainder(self, pre, tangents, remainder, lengths, layer_norms):
        """``R_Phi`` of :meth:`segment_expansion` from :meth:`segment_tangents`."""
        if self.odd:
            remainder = torch.cat([remainder, remainder])
            lengths = torch.cat([lengths, lengths])
        for layer, (z, tangent) in enumerate(zip(pre, tangents)):
            size, magnitude = tangent.abs(), z.abs()
            second = []
            for k in range(lengths.shape[1]):
                l_k = lengths[:, k, None, None]
                reach = size + 0.5 * l_k * remainder[:, k, None, None]
                peak = softrelu_hess((magnitude - l_k * reach).clamp_min(0.0), self.eps)
                term = peak * reach * reach
                second.append(torch.linalg.vector_norm(term.flatten(1), dim=1))
            remainder = layer_norms[layer] * (remainder + torch.stack(second, 1))
        if self.odd:
            half = remainder.shape[0] // 2
            remainder = 0.5 * (remainder[:half] + remainder[half:])
        return remainder
