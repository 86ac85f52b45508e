"""Curvature bound of the MM-Net energy over a whole step segment.

Proposition 1 bounds the Hessian at one point. A step ``x -> x - D`` is a
majorization-minimization step only if a quadratic majorant holds on the
whole segment ``z(t) = x - t D``, ``t in [0, 1]``. This module bounds
``sup_t ||Hess u(z(t))||`` from quantities known before the step is taken:

* data term: ``2 ||L||^2 / (sqrt3 min_t |L z(t)|^2)``, the minimum of a
  quadratic in ``t`` in closed form (eq. 16 at the worst point);
* prior term, evaluated on ``zhat = r z / |z|``: the Gauss-Newton part with
  ``|Phi(zhat(t))| >= |Phi(zhat(0))| - ||J_Phi|| |zhat(1) - zhat(0)|`` (the
  angle to ``z(0)`` grows along a segment, so the chord does too), the
  residual part with ``||v_res_l||_inf <= prod_{k >= l} ||W_k|| / |Phi|`` and
  ``softrelu'' <= 1 / (2 eps)``, and the rescaling part with
  ``min_t |z(t)|^2`` in closed form.

With ``M`` this bound, ``u(z(t)) <= u(x) - t g.D + t^2 M |D|^2 / 2`` for all
``t in [0, 1]``; the step is *certified* when that majorant at ``t = 1`` is
not above ``u(x)``, i.e. ``g.D >= M |D|^2 / 2``.

Every quantity above is a function of a few inner products of ``x``, ``D``,
``L x`` and ``L D``, so the bound is evaluated for many segment lengths
``l D`` at once (:func:`segment_curvatures`), which is how a certified step
picks the length with the lowest majorant.
"""

import math

import torch

from .objective import _sq_norm

_SQRT3 = math.sqrt(3.0)


def _dot(a, b):
    return (a * b).flatten(1).sum(1)


def _min_sq_norm_on_segments(aa, ad, dd, lengths):
    """``min_{t in [0, 1]} |a - t l d|^2`` for (batch,) products and (k,) ``l``.

    ``aa = |a|^2``, ``ad = a.d``, ``dd = |d|^2``; shape (batch, k).
    """
    aa, ad, dd = aa[:, None], ad[:, None], dd[:, None]
    ldd = lengths * dd
    t = torch.where(ldd > 0, ad / ldd.clamp_min(torch.finfo(dd.dtype).tiny), 0.0)
    t = (t * lengths).clamp(min=0.0)
    t = torch.minimum(t, lengths.expand_as(t))  # t now the distance l * t_rel
    return (aa - 2 * t * ad + t * t * dd).clamp_min(0.0)


def _chords(x, update, lengths, r):
    """``|zhat(1) - zhat(0)|`` of the unit-RMS ends of ``x - l D``, shape (batch, k).

    From the angle between ``x`` and ``x - l D``: ``tan = l |D_perp| |x| /
    (|x|^2 - l x.D)``, ``chord = 2 r sin(angle / 2)`` (exact for short steps,
    where ``1 - cos`` would cancel).
    """
    xx, xd = _sq_norm(x), _dot(x, update)
    perp = update - (xd / xx)[:, None, None] * x
    height = torch.sqrt(xx * _sq_norm(perp))[:, None] * lengths
    angle = torch.atan2(height, (xx[:, None] - lengths * xd[:, None]))
    return 2.0 * r * torch.sin(0.5 * angle)


def _prior_segment_bounds(x, update, lengths, prior, phi, layer_norms):
    """Bound of the prior term's Hessian norm over each segment, (batch, k)."""
    n = x[0].numel()
    r = math.sqrt(n)
    norms = layer_norms.to(device=x.device, dtype=x.dtype)
    jac = prior.jacobian_norm_bound(norms)
    phi_min = torch.sqrt(_sq_norm(phi))[:, None] - jac * _chords(x, update, lengths, r)
    z_sq_min = _min_sq_norm_on_segments(
        _sq_norm(x), _dot(x, update), _sq_norm(update), lengths
    )
    ok = (phi_min > 0) & (z_sq_min > 0)
    phi_min = torch.where(ok, phi_min, torch.ones_like(phi_min))
    gauss_newton = (
        2.0 / (_SQRT3 * n) + 2.0 * jac**2 / (_SQRT3 * phi_min**2)
        + 2.0 * jac / (r * phi_min)
    )  # fmt: skip
    residual = prior.hessian_norm_bound(norms) / phi_min
    z_sq_min = torch.where(ok, z_sq_min, torch.ones_like(z_sq_min))
    rescaling = 2.0 / (_SQRT3 * z_sq_min) * (1.0 + r * jac / phi_min)
    bound = (n / z_sq_min) * (gauss_newton + residual) + rescaling
    return torch.where(ok, bound, torch.full_like(bound, math.inf))


def segment_curvatures(x, update, L, L_norm, lengths, *, prior, phi, layer_norms, lam):
    """``M_l l^2 |D|^2`` for the segments ``x - t l D``, ``t in [0, 1]``.

    Parameters
    ----------
    x : torch.Tensor, shape (batch, n_sources, n_times)
        Current iterate.
    update : torch.Tensor
        The step ``D`` (the iterate moves to ``x - l D``).
    L : torch.Tensor, shape (n_channels, n_sources)
    L_norm : torch.Tensor
        ``||L||_2``.
    lengths : torch.Tensor, shape (n_lengths,)
        Segment lengths ``l > 0`` in units of ``D``.
    prior : SoftReLUAutoencoder | None
    phi : torch.Tensor | None
        ``Phi`` at the unit-RMS rescaling of ``x`` (from the energy pass).
    layer_norms : torch.Tensor | None
        Certified layer norms of the prior (None: no certificate possible
        with a prior, the bound is infinite).
    lam : float

    Returns
    -------
    curvature : torch.Tensor, shape (batch, n_lengths)
        ``M_l |l D|^2`` with ``M_l`` the curvature bound of ``u`` on segment
        ``l`` (``inf`` where no bound is available, e.g. when the segment
        passes too close to the null space of ``L``).
    """
    lengths = lengths.to(device=x.device, dtype=x.dtype)
    lx, ld = torch.matmul(L, x), torch.matmul(L, update)
    lx_min = _min_sq_norm_on_segments(_sq_norm(lx), _dot(lx, ld), _sq_norm(ld), lengths)
    l_sq = (L_norm * L_norm).to(x.dtype)
    mu = torch.where(
        lx_min > 0,
        2.0 * l_sq / (_SQRT3 * lx_min.clamp_min(torch.finfo(x.dtype).tiny)),
        torch.full_like(lx_min, math.inf),
    )
    if prior is not None and lam > 0:
        if layer_norms is None or phi is None:
            mu = torch.full_like(mu, math.inf)
        else:
            mu = mu + lam * _prior_segment_bounds(
                x, update, lengths, prior, phi, layer_norms
            )
    return mu * _sq_norm(update)[:, None] * lengths**2


def segment_curvature(x, update, L, L_norm, *, prior, phi, layer_norms, lam):
    """``M |D|^2``: curvature bound of ``u`` along the step ``D = update``.

    :func:`segment_curvatures` for the one segment ``l = 1``; shape (batch,).
    """
    one = torch.ones(1, device=x.device, dtype=x.dtype)
    return segment_curvatures(
        x, update, L, L_norm, one, prior=prior, phi=phi, layer_norms=layer_norms,
        lam=lam,
    )[:, 0]  # fmt: skip
