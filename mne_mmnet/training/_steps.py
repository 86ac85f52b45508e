"""What the training loops share: bilevel step, default config, guarded update.

A leaf of :mod:`mne_mmnet.training`: :mod:`.loop`, :mod:`._engine`,
:mod:`._session` and :mod:`.broad` import it, it imports none of them.
"""

from collections import namedtuple

import torch
from mne.utils import _check_option, logger

from .losses import meta_loss

TrainResult = namedtuple("TrainResult", ["model", "history", "out_dir"])
TrainResult.__doc__ = """What :func:`mne_mmnet.train` returns.

``model`` is the trained model (eval mode), ``history`` the list of log dicts
and ``out_dir`` the directory the files were written to.
"""
_CHECKPOINT = "checkpoint.pt"
_LOG = "train_log.jsonl"
_VAL_STREAM = -1  # per-sample random stream of the (fixed) validation starts
_PRIOR_STREAM = -2


def _detach(state):
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple | list):
        return type(state)(_detach(s) for s in state)
    return state


def meta_gradient_step(
    model, y, L, x_gt, x0, *, gradient="full", jfb_last=1, jfb_restarts=0, n_iter=None
):
    """Run the inner MM solver, evaluate eq. (11) and backpropagate it.

    Parameters
    ----------
    model : MMNet
        The model; gradients accumulate in its parameters' ``.grad``.
    y, L, x_gt, x0 : torch.Tensor
        Data (batch, n_channels, n_times), leadfield (n_channels, n_sources),
        ground truth and start (batch, n_sources, n_times).
    gradient : "full" | "jfb"
        ``"full"`` backpropagates through all ``n_iter`` unrolled iterations
        (second-order terms included). ``"jfb"`` runs the first
        ``n_iter - jfb_last`` iterations without a graph and backpropagates
        through the last ``jfb_last`` only (Jacobian-free backpropagation,
        Davy et al. 2025); the curvature state enters that tail detached.
    jfb_last : int
        Iterations tracked by ``"jfb"``.
    jfb_restarts : int
        With ``"jfb"``, how many times the untracked solver is first run for
        ``n_iter`` iterations and restarted (fresh curvature state) from its
        own output, to move the tracked tail closer to equilibrium.
    n_iter : int | None
        Inner iterations (default ``model.n_iter``).

    Returns
    -------
    loss : MetaLoss
        Per-sample terms (detached).
    """
    _check_option("gradient", gradient, ("full", "jfb"))
    n_iter = model.n_iter if n_iter is None else int(n_iter)
    if gradient == "full":
        x_hat, _, _ = model.iterate(x0, y, L, n_iter=n_iter, create_graph=True)
    else:
        tail = min(int(jfb_last), n_iter)
        x, state = x0, None
        with torch.no_grad():
            for _ in range(int(jfb_restarts)):
                x, _, _ = model.iterate(x, y, L, n_iter=n_iter)
            if n_iter > tail:
                x, state, _ = model.iterate(x, y, L, n_iter=n_iter - tail)
        x_hat, _, _ = model.iterate(
            x.detach(), y, L, n_iter=tail, create_graph=True, state=_detach(state)
        )
    loss = meta_loss(x_hat, x_gt, model.prior)
    loss.total.mean().backward()
    return type(loss)(*(t.detach() for t in loss))


def default_config(n_sources=994):
    """Return the configuration of the shipped default model (``"broad"``).

    Sign-equivariant networks (odd prior 994-1024-512-994,
    sign-invariant curvature inputs); the iterations start from the prior
    applied to the sLORETA estimate and take directional steps with
    ``gamma = 1`` along the leadfield-preconditioned direction (see
    :mod:`mne_mmnet.solver.precondition`), projected onto the analytic
    bound, with the descent safeguard. The shipped model adds a start gate
    fitted afterwards with the rest fixed (``init="gated"``,
    :func:`mne_mmnet.training.gate.fit_start_gate`, ``tools/train_gate.py``).

    Parameters
    ----------
    n_sources : int
        Number of sources.

    Returns
    -------
    config : dict
        For :meth:`mne_mmnet.MMNet.from_config`.
    """
    return dict(
        prior=dict(n_sources=n_sources, hidden=(1024, 512), odd=True),
        curvature=dict(
            n_sources=n_sources,
            embed=64,
            hidden=64,
            kernel_size=3,
            sign_invariant=True,
        ),  # fmt: skip
        lam=1.0,
        gamma=1.0,
        bound="analytic",
        n_iter=3,
        step="directional",
        init="prior",
        safeguard=True,
        guarantee="checked",
        preconditioner="leadfield",
        preconditioner_reg=0.1,
    )


def beats_best(le, area, progress):
    """Whether a validation global LE and AUC beat the best so far.

    The model users see is judged by what they see: the lowest global
    localisation error, AUC breaking ties. ``progress`` holds ``best_le`` and
    ``best_auc`` and is updated when the new scores win.
    """
    best_le = progress.get("best_le", float("inf"))
    best_auc = progress.get("best_auc", 0.0)
    better = le < best_le - 1e-9 or (abs(le - best_le) <= 1e-9 and area > best_auc)
    if better:
        progress.update(best_le=float(le), best_auc=float(area))
    return better


def _finite_update(params, max_norm=1.0):
    """Clip the gradient norm; False (and gradients dropped) if not finite."""
    params = [p for p in params if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if torch.isfinite(norm):
        return True
    for p in params:
        p.grad = None
    logger.info("Non-finite gradient: step skipped")
    return False
