"""Truncated bilevel training of MM-Net (Algorithm 1 of Tran et al., 2026)."""

from pathlib import Path

from mne.utils import _check_option, _validate_type, verbose

from ..utils import _get_device, _get_dtype
from ._steps import (  # noqa: F401 (public through mne_mmnet.training)
    TrainResult,
    default_config,
    meta_gradient_step,
)
from .distributed import (
    cleanup_distributed,
    setup_distributed,
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

    Algorithm 1 of :footcite:t:`TranEtAl2026`, with optional Jacobian-free
    backpropagation :footcite:`DavyEtAl2025`.

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
    .. footbibliography::
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
        from ._session import _train

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
