"""Truncated bilevel training of MM-Net (Algorithm 1 of Tran et al., 2026)."""

from collections import namedtuple
from pathlib import Path

import torch
from mne.utils import _check_option, _validate_type, verbose

from ..utils import _get_device, _get_dtype
from .distributed import (
    cleanup_distributed,
    setup_distributed,
)
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

    Sign-equivariant networks (odd prior, sign-invariant curvature inputs),
    directional steps with ``gamma = 1`` from the sLORETA start, projection
    onto the analytic bound, descent safeguard.

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
        prior=dict(n_sources=n_sources, hidden=(256, 128), odd=True),
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
        n_iter=10,
        step="directional",
        init="sloreta",
        safeguard=True,
        guarantee="checked",
    )


def _check_positive_int(value, name, *, allow_none=False, minimum=1):
    if allow_none and value is None:
        return None
    _validate_type(value, "int", name)
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}.")
    return int(value)


@verbose
def train(
    data,
    *,
    out_dir,
    val_data=None,
    model=None,
    leadfield=None,
    n_epochs=10,
    max_steps=None,
    batch_size=8,
    lr=5e-4,
    n_iter=None,
    gradient="full",
    jfb_last=1,
    jfb_restarts=0,
    init=None,
    prior_steps=0,
    prior_lr=1e-3,
    prior_noise=0.5,
    crop=None,
    grad_clip=1.0,
    checkpoint_every=100,
    resume=False,
    max_minutes=None,
    val_samples=256,
    val_every=None,
    seed=0,
    device=None,
    dtype="float32",
    progress=True,
    verbose=None,
):
    """Train MM-Net with the truncated bilevel scheme (Algorithm 1).

    Each step draws a batch, runs ``n_iter`` projected MM iterations from the
    start (``init``), evaluates the meta-loss (eq. 11) against the ground
    truth, backpropagates it (``gradient``) and takes an Adam step. Optionally
    the autoencoder prior is first pretrained alone as a denoiser on the
    ground-truth sources (``prior_steps``), which is cheap.

    Parameters
    ----------
    data : path-like | Simulation | tuple | Dataset
        Training set: a simulation directory (see
        :func:`mne_mmnet.load_simulation`), a ``Simulation``, an
        ``(eeg, sources)`` pair of arrays, or a torch ``Dataset`` of such pairs.
    out_dir : path-like
        Where the checkpoint, the JSON-lines log (``train_log.jsonl``), the
        loss plot (``loss.png``) and the final ``model.pt`` go.
    val_data : path-like | Simulation | tuple | Dataset | None
        Validation set, in any of the forms of ``data``, evaluated at the end
        of every epoch (its first ``val_samples`` samples).
    model : MMNet | LearnedSolver | dict | None
        Model or config to train; None uses
        :func:`~mne_mmnet.training.default_config`. Any
        :class:`mne_mmnet.networks.base.LearnedSolver` trains the same way
        (e.g. the learned baselines, configs from
        :func:`mne_mmnet.learned_baselines.baseline_config`); a dict with an
        ``"architecture"`` key builds that class.
    leadfield : array | mne.Forward | None
        Leadfield the data were simulated with; None reads the template.
        Data and leadfield are average referenced here.
    n_epochs : int
        Passes over the training set.
    max_steps : int | None
        Stop after this many optimiser steps.
    batch_size : int
        Global batch (split evenly across processes).
    lr : float
        Adam learning rate (paper: 5e-5 over 500 epochs on a GPU).
    n_iter : int | None
        Inner MM iterations (default: the model's, 10).
    gradient : "full" | "jfb"
        Backpropagation through all iterations or the last ``jfb_last`` only,
        see :func:`~mne_mmnet.training.meta_gradient_step`.
    jfb_last, jfb_restarts : int
        See :func:`~mne_mmnet.training.meta_gradient_step`.
    init : "random" | "mne" | "sloreta" | None
        Start of the inner solver (default: the model's).
    prior_steps : int
        Denoising pretraining steps of the prior before the bilevel phase.
    prior_lr : float
        Learning rate of the prior pretraining.
    prior_noise : float
        Largest relative noise level of the prior pretraining.
    crop : int | None
        Train on random windows of ``crop`` samples holding each sample's
        source-power peak (the networks are length agnostic).
    grad_clip : float | None
        Clip the global gradient norm.
    checkpoint_every : int
        Steps between checkpoints (also written at each epoch end and stop).
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` if it exists.
    max_minutes : float | None
        Time budget of this call; when spent, training stops cleanly after
        the current step with a checkpoint and a saved model.
    val_every : int | None
        Also validate every ``val_every`` steps (besides every epoch's end
        and the start of the bilevel phase). The model with the lowest
        validation meta-loss is saved as ``model_best.pt``.
    val_samples : int
        Validation samples used.
    seed : int
        Seed of the initial weights, the data order and the random starts.
    device : str | torch.device | None
        Device (default CUDA when available).
    dtype : "float32" | "float64"
        Floating precision.
    progress : bool
        Show a tqdm progress bar.
    %(verbose)s

    Returns
    -------
    result : TrainResult
        ``model`` (the trained model, eval mode), ``history`` (list of log
        dicts) and ``out_dir``.

    Notes
    -----
    Started by ``torchrun``, every process joins a process group (gloo on CPU,
    NCCL on GPU); see :mod:`mne_mmnet.training.distributed`. Rank 0 logs and
    writes files.

    References
    ----------
    .. [1] Tran et al. Majorization-Minimization Networks for Inverse
       Problems: An Application to EEG Imaging. arXiv:2602.03855 (2026).
    .. [2] Davy, Briceno-Arias, Pustelnik. Restarted contractive operators to
       learn at equilibrium. arXiv:2506.13239 (2025).
    """
    _validate_type(out_dir, "path-like", "out_dir")
    n_epochs = _check_positive_int(n_epochs, "n_epochs")
    max_steps = _check_positive_int(max_steps, "max_steps", allow_none=True)
    batch_size = _check_positive_int(batch_size, "batch_size")
    n_iter = _check_positive_int(n_iter, "n_iter", allow_none=True)
    jfb_last = _check_positive_int(jfb_last, "jfb_last")
    jfb_restarts = _check_positive_int(jfb_restarts, "jfb_restarts", minimum=0)
    prior_steps = _check_positive_int(prior_steps, "prior_steps", minimum=0)
    crop = _check_positive_int(crop, "crop", allow_none=True)
    checkpoint_every = _check_positive_int(checkpoint_every, "checkpoint_every")
    val_samples = _check_positive_int(val_samples, "val_samples")
    _validate_type(seed, "int", "seed")
    _check_option("gradient", gradient, ("full", "jfb"))
    _check_option("init", init, ("random", "mne", "sloreta", None))
    for name, value in (("lr", lr), ("prior_lr", prior_lr)):
        _validate_type(value, "numeric", name)
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}.")
    _validate_type(max_minutes, ("numeric", None), "max_minutes")
    _validate_type(grad_clip, ("numeric", None), "grad_clip")
    args = dict(
        n_epochs=n_epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=float(lr),
        n_iter=n_iter,
        gradient=gradient,
        jfb_last=jfb_last,
        jfb_restarts=jfb_restarts,
        init=init,
        prior_steps=prior_steps,
        prior_lr=float(prior_lr),
        prior_noise=float(prior_noise),
        crop=crop,
        grad_clip=grad_clip,
        checkpoint_every=checkpoint_every,
        max_minutes=max_minutes,
        val_samples=val_samples,
        val_every=None if val_every is None else int(val_every),
        seed=int(seed),
        dtype=str(dtype),
    )
    device = _get_device(device)
    ctx = setup_distributed(device)
    try:
        from ._engine import _train

        return _train(
            data,
            val_data,
            model,
            leadfield,
            Path(out_dir),
            args,
            device=device,
            dtype=_get_dtype(dtype),
            ctx=ctx,
            resume=resume,
            progress=progress,
        )
    finally:
        cleanup_distributed(ctx)
