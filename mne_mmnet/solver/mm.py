"""Projected (learned or classical) MM iterations with a descent safeguard."""

import math

import torch
from mne.utils import _check_option, _validate_type

from ..utils import _torch_generator
from .bounds import (
    _analytic_bound,
    _check_analytic_prior,
    _hvp_lambda_max,
    leadfield_norm,
)
from .directional import curvature_along, supports_forward_curvature
from .length_search import CERTIFY_LENGTHS, REFINE_FACTORS, _segment_majorant
from .objective import _energy_and_grad, normalize_sources
from .precondition import PRECONDITIONERS, precondition
from .trace import _Record

# smallest step multiplier the safeguard goes down to (2 ** -_MAX_HALVINGS)
_MAX_HALVINGS = 30
# cap of the directional step length, in units of the diagonal MM step
_MAX_DIRECTIONAL_RATIO = 1e3


def _bcast(t):
    return t[:, None, None]


def _rows(mask, t):
    """Repeat a per-sample mask over the stacked passes of an odd prior."""
    return mask if t.shape[0] == mask.shape[0] else mask.repeat(2, 1, 1)


def _directional_curvature(x, y, L, prior, lam, direction, state):
    """``d' H d`` per sample and the prior's tangents along ``d`` (or None).

    In forward mode from the energy pass's prior ``state``
    (:func:`~mne_mmnet.solver.directional.curvature_along`); with a prior
    that has no such expansion, one Hessian-vector product through autograd.
    """
    if supports_forward_curvature(prior, state):
        return curvature_along(x, direction, y, L, prior=prior, lam=lam, state=state)
    x_leaf = x.detach().requires_grad_(True)
    _, grad, _, x_leaf = _energy_and_grad(
        x_leaf, y, L, prior, lam, create_graph=True, keep_prior_state=False
    )
    (hvp,) = torch.autograd.grad(grad, x_leaf, direction.detach())
    return (hvp * direction.detach()).flatten(1).sum(1), None


def mm_iterations(
    x0,
    y,
    L,
    *,
    prior,
    curvature,
    n_iter,
    gamma,
    bound,
    step,
    lam,
    create_graph=False,
    safeguard=True,
    guarantee="checked",
    preconditioner="diagonal",
    preconditioner_reg=0.1,
    curvature_state=None,
    return_state=False,
    nu_low_ratio=1e-6,
    tikhonov=1e-6,
    n_power_iter=10,
    seed=None,
):
    """Differentiable core of the (learned) MM solver.

    Parameters
    ----------
    x0 : torch.Tensor, shape (batch, n_sources, n_times)
        Start (rescaled to unit RMS; the energy is scale-free).
    y : torch.Tensor, shape (batch, n_channels, n_times)
    L : torch.Tensor, shape (n_channels, n_sources)
    prior : torch.nn.Module | None
        Autoencoder prior (``bound='analytic'`` needs a SoftReLU autoencoder).
    curvature : callable | None
        Learned model with ``init_state(x)`` and ``(g, x, state) ->
        (p_tilde, state)``; ``None`` uses ``p = nu_up`` (classical MM). A
        model whose attribute ``accepts_bound`` is true is also given
        ``nu_up=`` (the (batch,) upper bound, detached; ``None`` without
        projection).
    n_iter : int
    gamma : float
        Relaxation in (0, 2).
    bound : 'analytic' | 'hvp' | None
        Upper projection bound; ``None`` (R-MM-Net) needs ``curvature``.
    step : 'diagonal' | 'directional'
    lam : float
    create_graph : bool
        Keep the graph through all iterations (bilevel training).
    safeguard : bool
        Reject steps that increase the energy.
    guarantee : "checked" | "certified"
        ``"checked"`` takes the proposed step when its energy does not rise
        (with the safeguard); ``"certified"`` first shortens each step to the
        minimiser of a quadratic majorant valid on its segment (the lowest
        over 16 segment lengths, 1 down to ``2**-30`` by factors of 4, then
        six around the best one on a ``sqrt(2)`` grid; see
        :mod:`mne_mmnet.solver.segment`), so that every step taken is a
        majorization-minimization step (shorter steps than the checked
        ones).
    preconditioner : "diagonal" | "leadfield"
        Step metric built from the projected curvature ``p``: ``diag(p)`` or
        the weighted minimum-norm operator of
        :mod:`mne_mmnet.solver.precondition` (mixes sources, eigenvalues at
        most ``nu_up``).
    preconditioner_reg : float
        Its relative regularisation ``rho``.
    curvature_state : object | None
        State of the curvature model to continue from (``None``: its
        ``init_state(x0)``).
    return_state : bool
        Also return the curvature state after the last iteration.
    nu_low_ratio : float
        ``nu_low = nu_low_ratio * nu_up``.
    tikhonov : float
        Relative Tikhonov floor of the data bound.
    n_power_iter : int
        Power iterations for ``bound='hvp'``.
    seed : None | int | torch.Generator
        Seed of the power iterations' start vectors.

    Returns
    -------
    x : torch.Tensor, shape (batch, n_sources, n_times)
        Final iterate (unit RMS).
    trace : MMTrace
        Stacked per-iteration tensors (detached).
    state : object | None
        Curvature state after the last iteration (only with
        ``return_state=True``; None without a curvature model).

    Notes
    -----
    Iteration ``i`` computes the bound ``nu_up`` at ``x_i`` (analytic: from
    the prior's pre-activations already computed with the gradient, no extra
    forward pass), ``p = clip(p_tilde, nu_low, nu_up)`` (or ``p = nu_up``),
    and proposes ``x_i - gamma * s * t * p * g`` with ``t = 1`` (diagonal) or
    ``t = (g.d) / (d'Hd)`` for ``d = P g`` (``P = diag(p)`` or the
    ``preconditioner``; directional; ``t`` capped at 1000 and used when
    ``d'Hd <= 0``). ``d'Hd`` is the energy's exact second derivative along
    ``d``, computed in forward mode from the prior's pre-activations of the
    energy pass (:mod:`mne_mmnet.solver.directional`: two propagations of
    the prior, whose first-order tangents the segment majorant then reuses),
    or by one Hessian-vector product for a prior without that expansion.
    The proposal is rescaled to unit RMS, which leaves the energy unchanged,
    and its energy and gradient are computed in one pass. The safeguard
    accepts it per sample only if the energy does not increase; otherwise the
    sample keeps ``x_i`` and its multiplier ``s`` is halved (down to
    ``2**-30``), and ``s`` doubles back towards 1 after every accepted step.
    Backtracking is thus spread over iterations: one energy-and-gradient
    evaluation per iteration, and the energy never increases. On the CPU,
    the pruned length search of certified steps synchronises with the host
    once per iteration, which the GPU path never does. All selections use
    :func:`torch.where`, so the loop stays differentiable
    (``create_graph=True``); the bounds and the directional length ``t`` are
    treated as constants.
    """
    _check_settings(bound, step, gamma, curvature, prior, guarantee, preconditioner)
    lam = float(lam)
    generator, L_norm, segment_lengths, layer_norms = _loop_constants(
        x0, L, prior, bound, guarantee, seed
    )
    x = normalize_sources(x0)
    if not create_graph:
        x = x.detach()
    terms, grad, state, _ = _energy_and_grad(
        x, y, L, prior, lam, create_graph=create_graph
    )
    cur_state = curvature_state
    if curvature is not None and cur_state is None:
        cur_state = curvature.init_state(x)
    scale = x.new_ones(x.shape[0])
    record = _Record(terms)
    for _ in range(n_iter):
        x_const = x.detach()
        # bound, projected curvature, preconditioned direction, step length
        nu_up = _upper_bound(bound, x_const, y, L, L_norm, prior, state,
                             layer_norms, lam, tikhonov, n_power_iter,
                             generator)  # fmt: skip
        p, cur_state = _projected_curvature(
            curvature, grad, x, cur_state, nu_up, nu_low_ratio, record
        )
        direction = precondition(
            p, grad, L, kind=preconditioner, reg=preconditioner_reg
        )
        length, expansion = _step_length(step, gamma, scale, x_const, y, L, prior,
                                         lam, grad, direction, state)  # fmt: skip
        factor = scale * length
        update = _bcast(factor) * direction
        # shortened to the majorant's minimiser when certifying (from the
        # prior's tangents along the direction when the step length has them)
        update, rate, curv = _segment_majorant(
            x_const, update, grad, L, prior, state, layer_norms, lam,
            segment_lengths, None if expansion is None else (expansion, factor),
        )  # fmt: skip
        # the candidate's energy decides (safeguard), per sample
        candidate = normalize_sources(x - update)
        new_terms, new_grad, new_state, _ = _energy_and_grad(
            candidate, y, L, prior, lam, create_graph=create_graph
        )
        descends = new_terms.total <= terms.total
        moves = rate > 0  # a certified step of length 0 is not a step
        accept = descends & moves if safeguard else torch.ones_like(descends)
        record.step(accept, moves, descends, rate, curv, update, x_const, scale,
                    nu_up)  # fmt: skip
        x, grad, terms, state, scale = _accept_step(
            accept, (x, grad, terms, state),
            (candidate, new_grad, new_terms, new_state), scale,
        )  # fmt: skip
        record.energies(terms)
    trace = record.trace(n_iter)
    if return_state:
        return x, trace, cur_state
    return x, trace


def _loop_constants(x0, L, prior, bound, guarantee, seed):
    """Return the loop's constants, made once on ``x0``'s device.

    No host-to-device copy happens inside the loop. They are the power
    iterations' generator (``bound='hvp'`` only), the leadfield norm, the
    segment lengths a step is bounded on (and the refinement factors when
    certifying) and the prior's layer operator
    norms (``None`` without them).
    """
    generator = _torch_generator(seed, x0.device) if bound == "hvp" else None
    L_norm = leadfield_norm(L).to(x0.device)
    on = dict(device=x0.device, dtype=x0.dtype)
    if guarantee == "certified":
        segment_lengths = (CERTIFY_LENGTHS.to(**on), REFINE_FACTORS.to(**on))
    else:
        segment_lengths = (CERTIFY_LENGTHS[:1].to(**on), None)
    layer_norms = None
    if prior is not None and hasattr(prior, "operator_norms"):
        layer_norms = prior.operator_norms(x0.shape[-1]).to(x0.device, x0.dtype)
    return generator, L_norm, segment_lengths, layer_norms


def _check_settings(bound, step, gamma, curvature, prior, guarantee, preconditioner):
    _check_option("bound", bound, ("analytic", "hvp", None))
    _check_option("step", step, ("diagonal", "directional"))
    _validate_type(gamma, "numeric", "gamma")
    if not 0 < gamma < 2:
        raise ValueError(f"gamma must lie in (0, 2), got {gamma}.")
    if bound is None and curvature is None:
        raise ValueError(
            "bound=None (no projection) needs a learned curvature model; the "
            "classical MM solver takes its step from bound='analytic' or 'hvp'."
        )
    if bound == "analytic" and prior is not None:
        _check_analytic_prior(prior)
    _check_option("guarantee", guarantee, ("checked", "certified"))
    _check_option("preconditioner", preconditioner, PRECONDITIONERS)


def _upper_bound(
    bound, x, y, L, L_norm, prior, state, layer_norms, lam, tikhonov,
    n_power_iter, generator,
):  # fmt: skip
    """Upper projection bound ``nu_up`` at the iterate ``x``, shape (batch,).

    ``'analytic'``: ``1 / (mu_data + lam * mu_prior)`` from the prior's
    forward ``state`` (no extra forward pass); ``'hvp'``: the inverse of the
    Hessian's largest eigenvalue by power iterations; ``None``: no bound.
    """
    if bound == "analytic":
        mu_data, mu_prior = _analytic_bound(
            x, L, L_norm, prior, state, layer_norms, tikhonov
        )
        return 1.0 / (mu_data + lam * mu_prior)
    if bound == "hvp":
        tiny = torch.finfo(x.dtype).tiny
        return 1.0 / _hvp_lambda_max(
            x, y, L, prior, lam, n_power_iter, generator
        ).clamp_min(tiny)
    return None


def _projected_curvature(curvature, grad, x, cur_state, nu_up, nu_low_ratio, record):
    """``p = clip(p_tilde, nu_low, nu_up)`` (learned) or ``p = nu_up`` (classical)."""
    zeros = x.new_zeros(x.shape[0])
    if curvature is None:
        record.clips(zeros, zeros)
        return _bcast(nu_up), cur_state
    extra = {}
    if getattr(curvature, "accepts_bound", False):
        extra["nu_up"] = None if nu_up is None else nu_up.detach()
    p_tilde, cur_state = curvature(grad, x, cur_state, **extra)
    if nu_up is None:  # R-MM-Net: no projection
        record.clips(zeros, zeros)
        return p_tilde, cur_state
    upper = _bcast(nu_up)
    lower = nu_low_ratio * upper
    record.clips(
        (p_tilde >= upper).flatten(1).float().mean(1),
        (p_tilde <= lower).flatten(1).float().mean(1),
    )
    return torch.minimum(torch.maximum(p_tilde, lower), upper), cur_state


def _step_length(step, gamma, scale, x, y, L, prior, lam, grad, direction, state):
    """Step length and the prior's tangents along ``direction`` (or None).

    ``gamma`` (diagonal) or ``gamma (g.d) / (d'Hd)`` (directional), per
    sample; ``state``: the prior's state at ``x``.
    """
    if step != "directional":
        return torch.full_like(scale, gamma), None
    tiny = torch.finfo(x.dtype).tiny
    g_dot_d = (grad * direction).detach().flatten(1).sum(1)
    d_h_d, expansion = _directional_curvature(x, y, L, prior, lam, direction, state)
    # 1-D MM step along d; 1 would be the diagonal step
    ratio = g_dot_d / d_h_d.clamp_min(tiny)
    ratio = torch.where(d_h_d > 0, ratio, torch.full_like(ratio, math.inf))
    return gamma * ratio.clamp(max=_MAX_DIRECTIONAL_RATIO), expansion


def _accept_step(accept, current, candidate, scale):
    """Move to ``candidate`` where ``accept``, else keep ``current``.

    ``current`` and ``candidate`` are ``(x, grad, terms, state)``; selected
    per sample with :func:`torch.where` (on-device, differentiable). The
    step multiplier ``scale`` doubles (up to 1) where accepted and halves
    (down to ``2 ** -_MAX_HALVINGS``) where rejected.
    """
    x, grad, terms, state = current
    new_x, new_grad, new_terms, new_state = candidate
    acc = _bcast(accept)
    x = torch.where(acc, new_x, x)
    grad = torch.where(acc, new_grad, grad)
    terms = type(terms)(*(torch.where(accept, a, b) for a, b in zip(new_terms, terms)))
    state = _keep_accepted_state(acc, new_state, state)
    scale = torch.where(
        accept,
        (2 * scale).clamp(max=1.0),
        (scale / 2).clamp(min=2.0**-_MAX_HALVINGS),
    )
    return x, grad, terms, state, scale


def _keep_accepted_state(acc, new_state, state):
    """Keep the prior's forward state of the accepted iterate, per sample."""
    if state is None or new_state is None:
        return state
    return type(state)(
        *(
            torch.where(acc, a, b)
            if isinstance(a, torch.Tensor)
            else None
            if a is None or b is None
            else [torch.where(_rows(acc, c), c, d) for c, d in zip(a, b)]
            for a, b in zip(new_state, state)
        )
    )
