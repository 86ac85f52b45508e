"""Curvature bounds of the MM-Net energy: Proposition 1 and HVP power iteration."""

import math
from collections import namedtuple

import torch
from mne.utils import _validate_type

from ..utils import _torch_generator
from .objective import _check_problem, _energy_terms, _sq_norm

_SQRT3 = math.sqrt(3.0)

CurvatureBound = namedtuple("CurvatureBound", ["mu_data", "mu_prior", "nu_up"])
CurvatureBound.__doc__ = """Analytic curvature bound (eq. 9), per sample.

``mu_data`` and ``mu_prior`` are (batch,) tensors and
``nu_up = 1 / (mu_data + lam * mu_prior)`` the largest admissible diagonal
inverse curvature.
"""

HVPBound = namedtuple("HVPBound", ["lambda_max", "nu_up"])
HVPBound.__doc__ = """Power-iteration curvature estimate, per sample.

``lambda_max`` is the estimated spectral norm of the energy's Hessian and
``nu_up = 1 / lambda_max``; both are (batch,) tensors.
"""


def leadfield_norm(L):
    """Spectral norm ``||L||_2``, exact up to float64 rounding.

    ``sqrt(lambda_max(G))`` of the Gram matrix ``G = L L^T`` (or ``L^T L``,
    whichever is smaller; 90 x 90 for the template), inflated by ``1e-12``
    relative to cover the rounding of ``G`` and of its eigenvalues.

    Parameters
    ----------
    L : torch.Tensor, shape (n_channels, n_sources)

    Returns
    -------
    norm : torch.Tensor
        0-d float64 tensor on ``L``'s device.
    """
    _validate_type(L, torch.Tensor, "L")
    a = L.detach().to(torch.float64)
    gram = a @ a.T if a.shape[0] <= a.shape[1] else a.T @ a
    top = torch.linalg.eigvalsh(gram)[-1].clamp_min(0)
    return torch.sqrt(top) * (1 + 1e-12)


def _check_analytic_prior(prior):
    """Check that the prior has the structure the analytic bound needs."""
    needed = (
        "conv_layers", "forward_with_preactivations", "operator_norms",
        "jacobian_norm_bound", "residual_curvature_bound", "segment_tangents",
        "segment_remainder",
    )  # fmt: skip
    missing = [name for name in needed if not hasattr(prior, name)]
    if missing:
        raise ValueError(
            "bound='analytic' needs a SoftReLU convolutional autoencoder prior "
            "(e.g. mne_mmnet.networks.SoftReLUAutoencoder) exposing "
            f"{needed}; {type(prior).__name__} lacks {missing}. Use bound='hvp' "
            "for other priors."
        )
    for conv in prior.conv_layers:
        k = conv.kernel_size[0]
        if (conv.stride[0], conv.dilation[0], conv.groups) != (1, 1, 1) or (
            conv.padding[0] != k // 2 or k % 2 != 1 or conv.padding_mode != "zeros"
        ):
            raise ValueError(
                "bound='analytic' supports Conv1d layers with odd kernels, stride "
                "1, dilation 1, groups 1 and zero 'same' padding only."
            )


def _data_bound(x, L, L_norm, tikhonov):
    """Eq. (16) with the Tikhonov floor: ``2 |L|^2 / (sqrt(3) |Lx|_eps^2)``."""
    l_sq = (L_norm * L_norm).to(x.dtype)
    lx_sq = _sq_norm(torch.matmul(L, x))
    return 2.0 * l_sq / (_SQRT3 * (lx_sq + tikhonov * l_sq * _sq_norm(x)))


def _prior_bound_terms(prior, state, layer_norms):
    """Bounds of the Hessian of ``1 - S_C(z, Phi(z))`` at ``z``.

    Returns ``(gauss_newton, residual, jacobian_norm)``, each (batch,) except
    the last (0-d): the Gauss-Newton part with the optimal ``beta``, the
    residual part of Appendix B and the bound of ``||J_Phi||``, the last two
    from the prior's own ``residual_curvature_bound`` and
    ``jacobian_norm_bound`` (see :class:`~mne_mmnet.networks.SoftReLUAutoencoder`).
    """
    z, phi, pre, v_res_all = state
    norms = layer_norms.to(device=z.device, dtype=z.dtype)
    jac_norm = prior.jacobian_norm_bound(norms)
    z_sq, phi_sq = _sq_norm(z), _sq_norm(phi)
    z_norm, phi_norm = torch.sqrt(z_sq), torch.sqrt(phi_sq)
    # (2 + sqrt3 b)/(sqrt3 |z|^2) + K (2 b + sqrt3)/(sqrt3 b |Phi|^2), minimised
    # over b > 0 at b = sqrt(K) |z| / |Phi|
    gauss_newton = (
        2.0 / (_SQRT3 * z_sq)
        + 2.0 * jac_norm**2 / (_SQRT3 * phi_sq)
        + 2.0 * jac_norm / (z_norm * phi_norm)
    )
    w = None
    if v_res_all is None:  # w = Pi_Phi u
        u = z / z_norm[:, None, None]
        v = phi / phi_norm[:, None, None]
        cos = (u * v).flatten(1).sum(1)
        w = (u - cos[:, None, None] * v) / phi_norm[:, None, None]
    residual = prior.residual_curvature_bound(pre, w, norms, vectors=v_res_all)
    return gauss_newton, residual, jac_norm


def _analytic_bound(x, L, L_norm, prior, state, layer_norms, tikhonov):
    """(mu_data, mu_prior) of the energy actually minimised, at ``x``."""
    mu_data = _data_bound(x, L, L_norm, tikhonov)
    if prior is None:
        return mu_data, torch.zeros_like(mu_data)
    gauss_newton, residual, jac_norm = _prior_bound_terms(prior, state, layer_norms)
    # prior evaluated at z = r x / |x| (r = sqrt(n)): chain rule through the
    # rescaling, whose Jacobian has norm r / |x| and whose second derivative
    # contracted with w = grad f(z) has norm <= 2 r |w| / (sqrt3 |x|^2), and
    # |w| <= 1 / |z| + ||J_Phi|| / |Phi|
    r = math.sqrt(x[0].numel())
    x_sq = _sq_norm(x)
    phi_norm = torch.sqrt(_sq_norm(state.phi))
    rescaling = 2.0 / (_SQRT3 * x_sq) * (1.0 + r * jac_norm / phi_norm)
    mu_prior = (r * r / x_sq) * (gauss_newton + residual) + rescaling
    return mu_data, mu_prior


def curvature_bound(x, y, L, *, prior=None, lam=1.0, tikhonov=1e-6):
    """Analytic curvature bound of Proposition 1 (eq. 9), per sample.

    Proposition 1 and Appendices A-B of :footcite:t:`TranEtAl2026`.

    Parameters
    ----------
    x : torch.Tensor, shape (batch, n_sources, n_times)
        Points where the bound is evaluated.
    y : torch.Tensor, shape (batch, n_channels, n_times)
        Sensor data (validated; the bound does not depend on it).
    L : torch.Tensor, shape (n_channels, n_sources)
        Leadfield.
    prior : SoftReLUAutoencoder | None
        Autoencoder prior; ``None`` bounds the data term only.
    lam : float
        Prior weight ``lambda >= 0``.
    tikhonov : float
        Relative Tikhonov floor: ``|Lx|^2`` is replaced by
        ``x'(L'L + eps I) x`` with ``eps = tikhonov * ||L||_2^2``.

    Returns
    -------
    bound : CurvatureBound
        ``(mu_data, mu_prior, nu_up)`` as (batch,) tensors.

    Raises
    ------
    ValueError
        If shapes are inconsistent or the prior lacks the structure the bound
        needs.

    Notes
    -----
    ``mu_data = 2 ||L||_2^2 / (sqrt(3) |Lx|_eps^2)`` (eq. 16), with ``||L||_2``
    computed exactly. The floor keeps the bound finite on the null space of
    ``L``; it lowers ``mu_data`` by the relative amount
    ``eps |x|^2 / |Lx|^2`` (use ``tikhonov=0`` for the exact eq. 16).

    For the prior term, at ``z`` (the unit-RMS rescaling of ``x``, see
    :func:`mne_mmnet.solver.energy`) with ``K = prod_k ||W_k||_2^2``:

    * Gauss-Newton part, eq. (18) with the trace-minimising
      ``beta = sqrt(K) |z| / |Phi|``:
      ``2 / (sqrt3 |z|^2) + 2 K / (sqrt3 |Phi|^2) + 2 sqrt(K) / (|z| |Phi|)``;
    * residual part, eq. (21): ``sum_l (prod_{k<l} ||W_k||^2)
      || v_res_l * softrelu''(z_l) ||_inf`` with ``v_res`` back-propagated
      from ``Pi_Phi u`` through the transposed convolutions;
    * rescaling part: the energy sees the prior through ``z = r x / |x|``;
      the chain rule multiplies the two parts above by ``r^2 / |x|^2`` and
      adds ``2 (1 + r sqrt(K) / |Phi|) / (sqrt3 |x|^2)`` (the second
      derivative of the rescaling, which has the cosine structure of eq. 14,
      contracted with a gradient of norm ``<= 1/|z| + sqrt(K)/|Phi|``).

    ``||W_k||_2`` are certified upper bounds
    (:func:`mne_mmnet.networks.conv_operator_norm`), so every term is an upper
    bound of the spectral norm of the corresponding Hessian block at ``x``.

    References
    ----------
    .. footbibliography::
    """
    _check_problem(x, y, L)
    _validate_type(lam, "numeric", "lam")
    _validate_type(tikhonov, "numeric", "tikhonov")
    if lam < 0 or tikhonov < 0:
        raise ValueError(f"lam and tikhonov must be >= 0, got {lam} and {tikhonov}.")
    state = None
    layer_norms = None
    with torch.no_grad():
        if prior is not None:
            _check_analytic_prior(prior)
            _, state, _ = _energy_terms(x, y, L, prior, lam, keep_prior_state=True)
            layer_norms = prior.operator_norms(x.shape[-1])
        mu_data, mu_prior = _analytic_bound(
            x.detach(),
            L.detach(),
            leadfield_norm(L),
            prior,
            state,
            layer_norms,
            float(tikhonov),
        )
    return CurvatureBound(mu_data, mu_prior, 1.0 / (mu_data + lam * mu_prior))


def _hvp_lambda_max(x, y, L, prior, lam, n_power_iter, generator):
    """Dominant Hessian eigenvalue magnitude per sample by power iteration."""
    x_leaf = x.detach().requires_grad_(True)
    with torch.enable_grad():
        total = _energy_terms(x_leaf, y, L, prior, lam)[0].total.sum()
        (grad,) = torch.autograd.grad(total, x_leaf, create_graph=True)
        vec = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        tiny = torch.finfo(x.dtype).tiny
        for _ in range(n_power_iter):
            vec = vec / torch.sqrt(_sq_norm(vec)).clamp_min(tiny)[:, None, None]
            (hvp,) = torch.autograd.grad(grad, x_leaf, vec, retain_graph=True)
            vec = hvp.detach()
        vec = vec / torch.sqrt(_sq_norm(vec)).clamp_min(tiny)[:, None, None]
        (hvp,) = torch.autograd.grad(grad, x_leaf, vec)
    return (vec * hvp).flatten(1).sum(1).abs().detach()


def hvp_curvature_bound(x, y, L, *, prior=None, lam=1.0, n_power_iter=20, seed=None):
    """Curvature estimate by power iteration on Hessian-vector products.

    Parameters
    ----------
    x : torch.Tensor, shape (batch, n_sources, n_times)
        Points where the Hessian is probed.
    y : torch.Tensor, shape (batch, n_channels, n_times)
        Sensor data.
    L : torch.Tensor, shape (n_channels, n_sources)
        Leadfield.
    prior : torch.nn.Module | None
        Any twice-differentiable prior; ``None`` for the data term only.
    lam : float
        Prior weight.
    n_power_iter : int
        Power iterations (each one Hessian-vector product).
    seed : None | int | numpy.random.Generator | torch.Generator
        Seed of the random start vector.

    Returns
    -------
    bound : HVPBound
        ``(lambda_max, nu_up)``, (batch,) tensors, ``nu_up = 1 / lambda_max``.

    Notes
    -----
    Algorithm 1 of MM-Net v1: ``v <- H v / |H v|`` with ``H v`` obtained by
    double back-propagation (the Hessian is never formed), then the Rayleigh
    quotient. Samples are independent, so one product on the summed energy
    gives all per-sample products. Power iteration finds the eigenvalue of
    largest magnitude and approaches it from below: ``1 / lambda_max`` is an
    estimate, not a certified bound (the solver's descent check covers the
    gap).
    """
    _check_problem(x, y, L)
    _validate_type(n_power_iter, "int-like", "n_power_iter")
    if int(n_power_iter) < 1:
        raise ValueError(f"n_power_iter must be >= 1, got {n_power_iter}.")
    generator = _torch_generator(seed, x.device)
    lam_max = _hvp_lambda_max(x, y, L, prior, float(lam), int(n_power_iter), generator)
    return HVPBound(lam_max, 1.0 / lam_max)
