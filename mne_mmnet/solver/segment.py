"""Quadratic majorant of the MM-Net energy over a whole step segment.

Proposition 1 bounds the Hessian at one point. A step ``x -> x - D`` is a
majorization-minimization step only if a quadratic majorant holds on the
whole segment ``x(s) = x - s D``. For each segment length ``l`` this module
computes ``C_l`` such that, with ``g`` the gradient at ``x``,

``u(x - s D) <= u(x) - s g.D + C_l s^2 / 2`` for every ``s in [0, l]``,

by a first-order expansion of every quantity along the segment with a
certified second-order remainder (a Taylor model in ``s``):

* data term ``1 - S_C(y, L x(s))``: ``L x(s)`` is a line, and the second
  derivative of ``w / |w|`` along a line ``w(s) = a - s b`` is
  ``-(2 (e.b) P b + |P b|^2 e) / |w|^2`` (``e = w / |w|``, ``P`` the
  projector orthogonal to ``e``; two orthogonal parts), whose norm is at
  most ``(2 / sqrt3) |b|^2 / |w(s)|^2``, so
  ``C = (2 / sqrt3) |L D|^2 / min_s |L x(s)|^2`` (the minimum in closed
  form);
* prior term ``1 - <e, Phi(r e)> / |Phi|`` on the unit direction
  ``e(s) = x(s) / |x(s)|`` (the energy's scale-invariant prior term): ``e(s)``
  has the same curvature bound; ``Phi`` along ``z(s) = r e(s)`` is expanded
  by :meth:`~mne_mmnet.networks.TaylorExpansions.segment_expansion`
  (exact tangent, remainder from the SoftReLU's curvature on each layer's
  actual pre-activations, carried through the certified layer norms); the
  cosine's own second-order term uses the block structure of its Hessian
  (no ``e``-``e`` block, ``1 / |Phi|`` across, ``(2 / sqrt3) / |Phi|^2`` in
  ``Phi``) with ``|Phi|`` bounded below on the segment.

The step ``l D`` is *certified* when the majorant at its end is not above
``u(x)``, i.e. ``g.D >= C_l l / 2``. Every bound is evaluated for many
lengths at once (:func:`segment_curvatures`), which is how a certified step
picks the length with the lowest majorant.
"""

import math

import torch

from .objective import _dot, _sq_norm

_SQRT3 = math.sqrt(3.0)
#: sup of ``|d^2/ds^2 (w / |w|)| |w|^2 / |w'|^2`` along a line: the maximum of
#: ``p sqrt(4 - 3 p^2)`` over ``p = sin(angle(w, w'))``, at ``p^2 = 2 / 3``
_LINE_CURVATURE = 2.0 / _SQRT3


def _min_sq_norm_on_segments(aa, ad, dd, lengths):
    """``min_{t in [0, 1]} |a - t l d|^2`` for (batch,) products, (batch, k) ``l``.

    ``aa = |a|^2``, ``ad = a.d``, ``dd = |d|^2``; shape (batch, k).
    """
    aa, ad, dd = aa[:, None], ad[:, None], dd[:, None]
    ldd = lengths * dd
    t = torch.where(ldd > 0, ad / ldd.clamp_min(torch.finfo(dd.dtype).tiny), 0.0)
    t = (t * lengths).clamp(min=0.0)
    t = torch.minimum(t, lengths.expand_as(t))  # t now the distance l * t_rel
    return (aa - 2 * t * ad + t * t * dd).clamp_min(0.0)


class _Line:
    """A line ``w(s) = a - s b`` through its products, for any lengths."""

    def __init__(self, a, b):
        self.products = (_sq_norm(a), _dot(a, b), _sq_norm(b))

    def bound(self, lengths):
        """``sup_s |d^2/ds^2 (w/|w|)|`` for ``s in [0, l]``; (batch, k).

        ``inf`` where the segment passes through 0.
        """
        aa, ab, bb = self.products
        w_min = _min_sq_norm_on_segments(aa, ab, bb, lengths)
        tiny = torch.finfo(aa.dtype).tiny
        bound = _LINE_CURVATURE * bb[:, None] / w_min.clamp_min(tiny)
        return torch.where(w_min > 0, bound, torch.full_like(bound, math.inf))


def _scaled_expansion(expansion, factor):
    """Return the prior's tangents along ``update = factor * d`` from ``d``'s.

    ``expansion = (tangents, phi_tangent)`` of
    :func:`~mne_mmnet.solver.directional.curvature_along` for ``d``: the
    segment ``x - s update`` has the unit tangent ``-factor`` times ``d``'s,
    and the tangents are linear in it (both passes of an odd prior carry the
    sample's factor).
    """
    tangents, phi1 = expansion
    scale = -factor[:, None, None]
    stacked = [scale if len(t) == len(scale) else scale.repeat(2, 1, 1)
               for t in tangents]  # fmt: skip
    return [s * t for s, t in zip(stacked, tangents)], scale * phi1


class _PriorSegment:
    """The prior term's expansion along one step; :meth:`bound` for any lengths.

    The prior term is ``1 - <e, Phi(r e)> / |Phi|`` on the unit direction
    ``e(s) = x(s) / |x(s)|``; what does not depend on the segment length
    (the tangents of ``e`` and of ``Phi``, one forward-mode pass) is
    computed once.
    """

    def __init__(self, x, update, prior, state, layer_norms, expansion=None):
        self.r = math.sqrt(x[0].numel())
        x_norm = torch.sqrt(_sq_norm(x))[:, None, None]
        e0 = x / x_norm
        # e(s) = e0 + s e1 + rho_e(s), |rho_e| <= s^2 r_e / 2
        e1 = -(update - _dot(e0, update)[:, None, None] * e0) / x_norm
        self.line = _Line(x, update)
        self.norms = layer_norms.to(device=x.device, dtype=x.dtype)
        self.prior, self.pre = prior, state.pre
        if expansion is None:
            self.tangents, phi1 = prior.segment_tangents(state.pre, self.r * e1)
        else:
            self.tangents, phi1 = _scaled_expansion(*expansion)
        phi = state.phi
        self.phi_norm = torch.sqrt(_sq_norm(phi))
        cos = _dot(e0, phi) / self.phi_norm
        self.sin = torch.sqrt((1.0 - cos * cos).clamp_min(0.0))
        self.e1_norm = torch.sqrt(_sq_norm(e1))[:, None]
        self.phi1_norm = torch.sqrt(_sq_norm(phi1))[:, None]

    def bound(self, lengths):
        """``C_l`` of the prior term, (batch, k)."""
        r_e = self.line.bound(lengths)
        r_phi = self.prior.segment_remainder(
            self.pre, self.tangents, self.r * r_e, lengths, self.norms
        )
        half = 0.5 * lengths
        # |Delta e| <= s d_e, |Delta Phi| <= s d_phi on [0, l]
        d_e = self.e1_norm + half * r_e
        d_phi = self.phi1_norm + half * r_phi
        phi_min = self.phi_norm[:, None] - lengths * d_phi
        ok = torch.isfinite(r_e) & torch.isfinite(r_phi) & (phi_min > 0)
        phi_min = torch.where(ok, phi_min, torch.ones_like(phi_min))
        bound = (
            r_e
            + (self.sin / self.phi_norm)[:, None] * r_phi
            + 2.0 * d_e * d_phi / phi_min
            + (2.0 / _SQRT3) * d_phi * d_phi / (phi_min * phi_min)
        )
        return torch.where(ok, bound, torch.full_like(bound, math.inf))


class SegmentMajorant:
    """The majorant's curvature along one step ``D``, for any segment lengths.

    ``SegmentMajorant(x, update, L, ...)(lengths)`` is
    :func:`segment_curvatures`; what does not depend on the lengths (the
    data's line ``L x - s L D``, the tangents of the prior's expansion) is
    computed once, so several sets of lengths cost one forward-mode pass of
    the prior in all, and none when ``expansion`` gives the prior's tangents
    along the step's direction ``d`` with ``update = factor * d`` as
    ``(expansion, factor)`` (from
    :func:`~mne_mmnet.solver.directional.curvature_along`). Other parameters
    as :func:`segment_curvatures`.
    """

    def __init__(self, x, update, L, *, prior, state, layer_norms, lam,
                 expansion=None):  # fmt: skip
        with torch.no_grad():  # a constant of the step (no graph through it)
            x, update, L = x.detach(), update.detach(), L.detach()
            self.x, self.lam = x, lam
            self.data = _Line(torch.matmul(L, x), torch.matmul(L, update))
            self.prior = None
            self.no_prior_bound = False
            if prior is not None and lam > 0:
                usable = (
                    layer_norms is not None and state is not None
                    and getattr(state, "pre", None) is not None
                    and hasattr(prior, "segment_tangents")
                )  # fmt: skip
                if usable:
                    self.prior = _PriorSegment(
                        x, update, prior, state, layer_norms, expansion
                    )
                else:
                    self.no_prior_bound = True

    def __call__(self, lengths):
        """``C_l l^2`` for ``lengths`` of shape (n_lengths,) or (batch, n_lengths)."""
        with torch.no_grad():
            x = self.x
            lengths = lengths.to(device=x.device, dtype=x.dtype)
            lengths = lengths.expand(x.shape[0], lengths.shape[-1])
            mu = self.data.bound(lengths)
            if self.prior is not None:
                mu = mu + self.lam * self.prior.bound(lengths)
            elif self.no_prior_bound:
                mu = torch.full_like(mu, math.inf)
            return mu * lengths**2


def segment_curvatures(x, update, L, lengths, *, prior, state, layer_norms, lam):
    """``C_l l^2``: the majorant's curvature over the segments ``x - t l D``.

    Parameters
    ----------
    x : torch.Tensor, shape (batch, n_sources, n_times)
        Current iterate.
    update : torch.Tensor
        The step ``D`` (the iterate moves to ``x - l D``).
    L : torch.Tensor, shape (n_channels, n_sources)
    lengths : torch.Tensor, shape (n_lengths,) or (batch, n_lengths)
        Segment lengths ``l > 0`` in units of ``D`` (shared, or per sample).
    prior : SoftReLUAutoencoder | None
    state : object | None
        The prior's forward state at the unit-RMS rescaling of ``x`` (from
        the energy pass: ``phi`` and the pre-activations ``pre``).
    layer_norms : torch.Tensor | None
        Certified layer norms of the prior (None: no certificate possible
        with a prior, the bound is infinite).
    lam : float

    Returns
    -------
    curvature : torch.Tensor, shape (batch, n_lengths)
        ``C_l l^2``: ``u(x - t l D) <= u(x) - t l g.D + t^2 C_l l^2 / 2`` for
        ``t in [0, 1]`` (``inf`` where no bound is available, e.g. when the
        segment passes too close to the null space of ``L``).
    """
    majorant = SegmentMajorant(x, update, L, prior=prior, state=state,
                               layer_norms=layer_norms, lam=lam)  # fmt: skip
    return majorant(lengths)


def segment_curvature(x, update, L, *, prior, state, layer_norms, lam):
    """``C``: the majorant's curvature along the whole step ``D = update``.

    :func:`segment_curvatures` for the one segment ``l = 1``; shape (batch,).
    """
    one = torch.ones(1, device=x.device, dtype=x.dtype)
    return segment_curvatures(
        x, update, L, one, prior=prior, state=state, layer_norms=layer_norms,
        lam=lam,
    )[:, 0]  # fmt: skip
