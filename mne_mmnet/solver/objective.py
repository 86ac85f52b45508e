"""The MM-Net lower-level energy (eq. 8) and its gradient, batched in torch."""

import math
from collections import namedtuple

import torch
from mne.utils import _validate_type

Energy = namedtuple("Energy", ["total", "fidelity", "prior"])
Energy.__doc__ = """Energy of eq. (8) per sample: ``total = fidelity + lam * prior``.

Each field is a tensor of shape (batch,).
"""

# what the analytic bound needs from one energy evaluation (all detached)
# v_res: d(w . Phi)/d a_l with w = Pi_Phi u, when taken from the gradient pass
_PriorState = namedtuple("_PriorState", ["z", "phi", "pre", "v_res"], defaults=[None])


def _sq_norm(t):
    """Squared Euclidean norm of each flattened sample, shape (batch,)."""
    return t.flatten(1).pow(2).sum(1)


def _dot(a, b):
    """Inner product of each pair of flattened samples, shape (batch,)."""
    return (a * b).flatten(1).sum(1)


def cosine_similarity(a, b):
    """Cosine similarity of flattened samples, ``a.b / (|a| |b|)``.

    Parameters
    ----------
    a, b : torch.Tensor, shape (batch, ...)
        Two batches of arrays of equal shape; each sample is flattened.

    Returns
    -------
    similarity : torch.Tensor, shape (batch,)
    """
    a = a.flatten(1)
    b = b.flatten(1)
    dot = (a * b).sum(1)
    # a zero sample has no direction: give 0 rather than NaN
    norms = torch.sqrt(a.pow(2).sum(1) * b.pow(2).sum(1))
    return dot / norms.clamp_min(torch.finfo(norms.dtype).tiny)


def normalize_sources(x):
    """Rescale each sample to unit root-mean-square (the prior's input scale).

    Parameters
    ----------
    x : torch.Tensor, shape (batch, n_sources, n_times)

    Returns
    -------
    x_unit : torch.Tensor
        ``x * sqrt(n_sources * n_times) / ||x||`` per sample.

    Notes
    -----
    The energy evaluates the prior on this rescaling of the iterate (see
    :func:`energy`), so an autoencoder prior should be trained on sources
    normalised with this function.
    """
    n = x[0].numel()
    return x * (math.sqrt(n) / torch.sqrt(_sq_norm(x)))[:, None, None]


def _check_problem(x, y, L):
    """Validate the shapes of an (x, y, L) triple of tensors."""
    for name, val in (("x", x), ("y", y), ("L", L)):
        _validate_type(val, torch.Tensor, name)
    if x.ndim != 3 or y.ndim != 3:
        raise ValueError(
            "x and y must be batched 3-D tensors (batch, n_sources, n_times) and "
            f"(batch, n_channels, n_times), got shapes {tuple(x.shape)} and "
            f"{tuple(y.shape)}. Add a leading batch axis with x[None]."
        )
    if L.ndim != 2:
        raise ValueError(
            f"L must be a 2-D (n_channels, n_sources) tensor, got {tuple(L.shape)}."
        )
    if x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(
            "x and y must share batch size and number of time samples, got "
            f"{tuple(x.shape)} and {tuple(y.shape)}."
        )
    if L.shape != (y.shape[1], x.shape[1]):
        raise ValueError(
            f"L must have shape (n_channels, n_sources) = ({y.shape[1]}, "
            f"{x.shape[1]}), got {tuple(L.shape)}."
        )
    if x.shape[2] < 1:
        raise ValueError("x must have at least one time sample.")
    devices = {x.device, y.device, L.device}
    if len(devices) != 1:
        raise ValueError(f"x, y and L must be on one device, got {devices}.")


def _forward_prior(prior, z, keep):
    """Run ``prior`` on ``z``: Phi, pre-activations and activations (or None)."""
    if keep and hasattr(prior, "forward_with_activations"):
        return prior.forward_with_activations(z)
    if keep and hasattr(prior, "forward_with_preactivations"):
        return (*prior.forward_with_preactivations(z), None)
    return prior(z), None, None


def _energy_terms(x, y, L, prior, lam, *, keep_prior_state=False):
    """Energy of eq. (8) with the prior evaluated on the unit-RMS iterate.

    Returns an :class:`Energy`, the detached prior state
    ``(z, Phi(z), [z_1..z_N])`` reused by the analytic curvature bound (when
    asked) and the prior's activations ``[a_1..a_N]`` (attached, or None).
    """
    Lx = torch.matmul(L, x)
    fidelity = 1.0 - cosine_similarity(y, Lx)
    state = acts = None
    if prior is None:
        prior_term = torch.zeros_like(fidelity)
    else:
        z = normalize_sources(x)
        phi, pre, acts = _forward_prior(prior, z, keep_prior_state)
        if phi.shape != z.shape:
            raise ValueError(
                f"prior must map {tuple(z.shape)} to the same shape, got "
                f"{tuple(phi.shape)}."
            )
        prior_term = 1.0 - cosine_similarity(z, phi)
        if keep_prior_state:
            state = _PriorState(
                z.detach(),
                phi.detach(),
                None if pre is None else [p.detach() for p in pre],
            )
    total = fidelity + lam * prior_term
    return Energy(total, fidelity, prior_term), state, acts


def energy(x, y, L, *, prior=None, lam=1.0):
    """MM-Net energy ``u(x)`` of eq. (8), per sample.

    Eq. (8) of :footcite:t:`TranEtAl2026`.

    Parameters
    ----------
    x : torch.Tensor, shape (batch, n_sources, n_times)
        Source estimates.
    y : torch.Tensor, shape (batch, n_channels, n_times)
        Sensor data.
    L : torch.Tensor, shape (n_channels, n_sources)
        Leadfield.
    prior : torch.nn.Module | None
        Autoencoder ``Phi``; ``None`` keeps the data term only.
    lam : float
        Weight ``lambda >= 0`` of the prior term.

    Returns
    -------
    energy : Energy
        Named tuple ``(total, fidelity, prior)`` of (batch,) tensors, with
        ``fidelity = 1 - S_C(y, L x)``, ``prior = 1 - S_C(x, Phi(x_unit))`` and
        ``total = fidelity + lam * prior``. Differentiable in ``x`` (and in the
        prior's parameters) with autograd.

    Raises
    ------
    ValueError
        If shapes or devices are inconsistent or ``lam < 0``.

    Notes
    -----
    Matrices are flattened per sample before cosines are taken. The prior is
    evaluated on the unit-RMS rescaling ``x_unit`` of ``x``
    (:func:`normalize_sources`); since ``S_C(x, .) = S_C(x_unit, .)`` this is
    the paper's ``1 - S_C(x, Phi(x))`` wherever ``x`` has unit RMS, and it
    makes the whole energy invariant to the scale of ``x``. The solver keeps
    its iterates at unit RMS, where this energy has the paper's value; its
    gradient is not eq. (8)'s (the rescaling adds a term, about 0.7 % of the
    gradient's norm at unit RMS): the solver minimises this scale-invariant
    variant, the autoencoder always sees inputs on the scale it was trained
    on and the iterate cannot drift in scale.

    References
    ----------
    .. footbibliography::
    """
    _check_problem(x, y, L)
    _validate_type(lam, "numeric", "lam")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}.")
    return _energy_terms(x, y, L, prior, float(lam))[0]


def _energy_and_grad(x, y, L, prior, lam, *, create_graph=False, keep_prior_state=True):
    """Energy, its gradient in ``x`` and the prior state, for a batch.

    With ``create_graph=False`` everything returned is detached. Otherwise the
    gradient keeps its graph (for bilevel training or Hessian-vector products).
    """
    if create_graph:
        x_in = x if x.requires_grad else x.detach().requires_grad_(True)
    else:
        x_in = x.detach().requires_grad_(True)
    with torch.enable_grad():
        terms, state, acts = _energy_terms(
            x_in, y, L, prior, lam, keep_prior_state=keep_prior_state
        )
        # d total / d a_l = -lam * v_res_l: the residual vectors of Appendix B
        # come for free with the gradient
        acts = acts if (acts is not None and lam > 0) else []
        grads = torch.autograd.grad(
            terms.total.sum(), [x_in, *acts], create_graph=create_graph
        )
    grad = grads[0]
    if acts:
        state = state._replace(v_res=[-g.detach() / lam for g in grads[1:]])
    if not create_graph:
        terms = Energy(*(t.detach() for t in terms))
        grad = grad.detach()
    return terms, grad, state, x_in
