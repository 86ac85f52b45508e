"""The energy's curvature along a direction, ``d' H d``, in forward mode.

A directional step needs ``d' H d = d^2/ds^2 u(x + s d)`` at ``s = 0``. It
is computed here from second-order expansions along the line ``x + s d``
instead of a Hessian-vector product through autograd:

* data term ``1 - <y_hat, w / |w|>`` with ``w(s) = L x + s L d`` (a line);
* the prior's input ``z(s) = r x(s) / |x(s)|`` (the unit-RMS rescaling,
  ``r = sqrt(n_sources n_times)``);
* ``Phi(z(s))`` through the network
  (:meth:`~mne_mmnet.networks.TaylorExpansions.second_order_tangents`,
  from the pre-activations the energy pass already computed);
* prior term ``1 - <z / r, Phi / |Phi|>``.

Every unit vector ``e = w / |w|`` of a curve ``w(s)`` has
``e' = P w' / |w|`` and
``e'' = P w'' / |w| - (2 (e.w') P w' + |P w'|^2 e) / |w|^2``
(``P = I - e e'``). The network is propagated twice (tangent and second
derivative, stacked in one convolution per layer) instead of the forward,
backward and double-backward passes of autograd, and the tangents are kept
for the step's segment majorant, whose expansion along the same line starts
from them (:class:`~mne_mmnet.solver.segment.SegmentMajorant`).
"""

import math

import torch

from .objective import _dot, _sq_norm


def _b(t):
    return t[:, None, None]


def _unit_curve(w, w1, w2=None):
    """``e = w / |w|``, ``e'`` and ``e''`` along a curve with ``w'``, ``w''``."""
    norm = torch.sqrt(_sq_norm(w))
    e = w / _b(norm)
    along = _b(_dot(e, w1))
    across = w1 - along * e
    e1 = across / _b(norm)
    e2 = -(2 * along * across + _b(_sq_norm(across)) * e) / _b(norm * norm)
    if w2 is not None:
        e2 = e2 + (w2 - _b(_dot(e, w2)) * e) / _b(norm)
    return e, e1, e2


def supports_forward_curvature(prior, state):
    """Whether :func:`curvature_along` applies (else: autograd's product)."""
    if prior is None:
        return True
    return (
        hasattr(prior, "second_order_tangents")
        and state is not None
        and getattr(state, "pre", None) is not None
    )


@torch.no_grad()
def curvature_along(x, direction, y, L, *, prior, lam, state):
    """``d' H d`` of the energy at ``x`` for ``d = direction``, per sample.

    Parameters
    ----------
    x : torch.Tensor, shape (batch, n_sources, n_times)
        The iterate (any nonzero scale).
    direction : torch.Tensor
        ``d``, same shape.
    y : torch.Tensor, shape (batch, n_channels, n_times)
    L : torch.Tensor, shape (n_channels, n_sources)
    prior : SoftReLUAutoencoder | None
    lam : float
    state : object | None
        The prior's state at ``x`` from the energy pass (``phi`` and the
        pre-activations ``pre``; see ``supports_forward_curvature``).

    Returns
    -------
    curvature : torch.Tensor, shape (batch,)
        ``d' H d`` (detached).
    expansion : tuple | None
        ``(tangents, phi_tangent)`` of the prior along ``z(s)`` (see
        :meth:`~mne_mmnet.networks.TaylorExpansions.second_order_tangents`)
        for the unit tangent ``z'(0)`` of ``d``; ``None`` without a prior
        term.
    """
    x, d = x.detach(), direction.detach()
    y_unit = y / _b(torch.sqrt(_sq_norm(y)).clamp_min(torch.finfo(y.dtype).tiny))
    _, _, w2 = _unit_curve(torch.matmul(L, x), torch.matmul(L, d))
    curvature = -_dot(y_unit, w2)
    if prior is None or lam == 0:
        return curvature, None
    r = math.sqrt(x[0].numel())
    u, u1, u2 = _unit_curve(x, d)
    tangents, phi1, phi2 = prior.second_order_tangents(state.pre, r * u1, r * u2)
    q, q1, q2 = _unit_curve(state.phi, phi1, phi2)
    # prior term 1 - <u, q>: its second derivative
    second = _dot(u2, q) + 2 * _dot(u1, q1) + _dot(u, q2)
    return curvature - lam * second, (tangents, phi1)
