"""One training run of :func:`mne_mmnet.training.train`: state and phases.

A :class:`_Session` holds what the phases share (model, optimisers, progress
counters, clock, log, validation data); :func:`_prior_phase` pretrains the
prior by denoising and :func:`_bilevel_phase` runs the truncated bilevel
steps, validating and checkpointing as configured.
"""

import time

import numpy as np
import torch
from mne.utils import _validate_type, logger, warn
from tqdm.auto import tqdm

from ..architectures import build_model
from ..networks.base import LearnedSolver
from ..problem import average_reference
from ._data import (
    _as_dataset,
    _crop,
    _get_leadfield,
    _sample_generator,
    _validation_simulation,
)
from ._engine import (
    _evaluate,
    _Logger,
    _prepare,
    _save_checkpoint,
    _start,
)
from ._steps import (
    _CHECKPOINT,
    _PRIOR_STREAM,
    TrainResult,
    beats_best,
    default_config,
    meta_gradient_step,
)
from .distributed import (
    all_reduce_sum,
    average_gradients,
    barrier,
    broadcast_parameters,
)
from .losses import denoising_loss


class _Session:
    """Model, optimisers, progress, clock and log of one training run."""

    def __init__(self, model, dataset, L_t, out_dir, args, ctx, progress):
        self.model, self.dataset, self.L_t = model, dataset, L_t
        self.out_dir, self.args, self.ctx = out_dir, args, ctx
        self.show_progress = progress and ctx.is_main
        self.optimizer = torch.optim.Adam(model.parameters(), lr=args["lr"])
        prior = model.prior
        self.prior_params = [] if prior is None else list(prior.parameters())
        self.prior_optimizer = torch.optim.Adam(
            self.prior_params or [torch.zeros(1)], lr=args["prior_lr"]
        )
        self.state = dict(
            step=0,
            epoch=0,
            batch=0,
            prior_step=0,
            val_step=-1,
            best_val=float("inf"),
            best_le=float("inf"),
            best_auc=0.0,
        )
        if args["grad_clip"] is None:
            args["grad_clip"] = float("inf")
        self.val = self.positions = self.adjacency = None
        self.log = _Logger(out_dir, ctx.is_main)
        self.t_start = time.monotonic()
        minutes = args["max_minutes"]
        self.budget = float("inf") if minutes is None else 60 * minutes

    def restore(self, checkpoint):
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.prior_optimizer.load_state_dict(checkpoint["prior_optimizer"])
        self.state.update(checkpoint["progress"])

    def set_validation(self, val_data, *, with_template):
        n_max = self.args["val_samples"]
        sim = _validation_simulation(val_data, n_max)
        val_set = _as_dataset(sim if sim is not None else val_data, "val_data")
        n_val = min(len(val_set), n_max)
        self.val = (sim, torch.utils.data.Subset(val_set, range(n_val)))
        if with_template:  # localisation metrics need the template's geometry
            from ..forward import read_template_adjacency, read_template_forward

            self.positions = read_template_forward(verbose=False)["source_rr"]
            self.adjacency = read_template_adjacency()

    def loader(self, stream_seed):
        """Sampler and loader of this rank's share of each batch."""
        ctx, dataset = self.ctx, self.dataset
        sampler = torch.utils.data.DistributedSampler(
            dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
            seed=stream_seed, drop_last=True,
        )  # fmt: skip
        per_rank = self.args["batch_size"] // ctx.world_size
        ld = torch.utils.data.DataLoader(
            dataset, batch_size=per_rank, sampler=sampler, drop_last=True
        )
        if len(ld) == 0:
            raise ValueError(
                f"The training set ({len(dataset)} samples) is smaller than one "
                f"batch ({self.args['batch_size']}); lower batch_size."
            )
        return sampler, ld

    def elapsed(self):
        return time.monotonic() - self.t_start

    def out_of_time(self):
        flag = torch.tensor([float(self.elapsed() > self.budget)], dtype=torch.float64)
        return bool(all_reduce_sum(flag, self.ctx)[0] > 0)

    def checkpoint(self):
        if self.ctx.is_main:
            _save_checkpoint(self.out_dir / _CHECKPOINT, self.model, self.optimizer,
                             self.prior_optimizer, self.state, self.args)  # fmt: skip

    def update(self, optimizer, params):
        """Average, clip and apply the gradients; False if they are not finite."""
        average_gradients(self.model, self.ctx)
        norm = torch.nn.utils.clip_grad_norm_(params, self.args["grad_clip"])
        if not torch.isfinite(norm):
            optimizer.zero_grad(set_to_none=True)
            warn(f"Non-finite gradient at step {self.state['step']}; step skipped.")
            return False
        optimizer.step()
        return True

    def mean_over_ranks(self, *per_sample):
        t = torch.stack(
            [v.double().sum() for v in per_sample]
            + [torch.tensor(float(per_sample[0].numel()))]
        )
        t = all_reduce_sum(t.cpu(), self.ctx)
        return [float(v / t[-1]) for v in t[:-1]]

    def validate(self):
        """Score the validation set; keep the best model (see ``_improves``)."""
        from ..pretrained import save_model

        if self.val is None:
            return
        state = self.state
        scores = _evaluate(
            self.model, self.val, self.L_t, self.args, self.ctx,
            positions=self.positions, adjacency=self.adjacency,
        )  # fmt: skip
        state["val_step"] = state["step"]
        self.log.write(phase="validation", step=state["step"], epoch=state["epoch"],
                       time=self.elapsed(), **scores)  # fmt: skip
        if self.ctx.is_main and _improves(scores, state):
            history = [h for h in self.log.history if h.get("phase") == "validation"]
            meta = dict(
                train_args=self.args,
                progress=dict(state),
                selection=_SELECTION,
                validation=history,
            )
            save_model(self.model, self.out_dir / "model_best.pt", metadata=meta,
                       overwrite=True)  # fmt: skip


_SELECTION = (
    "lowest validation global LE, AUC breaks ties (lowest meta-loss without metrics)"
)


def _improves(scores, state):
    """Whether these validation scores beat the best so far (and record them).

    Global LE, then AUC (``beats_best``); the meta-loss without metrics.
    """
    le = scores.get("val_global_le")
    if le is not None and np.isfinite(le):
        return beats_best(le, scores.get("val_auc", 0.0), state)
    if scores["val_loss"] < state["best_val"]:
        state["best_val"] = float(scores["val_loss"])
        return True
    return False


def _prior_phase(session):
    """Denoising pretraining of the prior; True if the time budget ran out."""
    model, args, state, ctx = session.model, session.args, session.state, session.ctx
    if model.prior is None or state["prior_step"] >= args["prior_steps"]:
        return False
    sampler, ld = session.loader(args["seed"] + 1)
    bar = tqdm(total=args["prior_steps"], initial=state["prior_step"], desc="prior",
               disable=not session.show_progress)  # fmt: skip
    stopped = False
    while state["prior_step"] < args["prior_steps"] and not stopped:
        epoch, skip = divmod(state["prior_step"], len(ld))
        sampler.set_epoch(epoch)
        for b, (idx, eeg, src) in enumerate(ld):
            if b < skip:
                continue
            _, src = _crop(eeg, src, idx, args["crop"], args["seed"], epoch)
            gen = _sample_generator(
                args["seed"], _PRIOR_STREAM,
                state["prior_step"] * ctx.world_size + ctx.rank, session.L_t.device,
            )  # fmt: skip
            session.prior_optimizer.zero_grad(set_to_none=True)
            loss = denoising_loss(
                model.prior, src.to(session.L_t), noise_level=args["prior_noise"],
                generator=gen,
            )  # fmt: skip
            loss.mean().backward()
            session.update(session.prior_optimizer, session.prior_params)
            state["prior_step"] += 1
            (mean,) = session.mean_over_ranks(loss.detach())
            session.log.write(phase="prior", step=state["prior_step"],
                              time=session.elapsed(), loss=mean)  # fmt: skip
            bar.update()
            bar.set_postfix(loss=f"{mean:.4f}")
            if state["prior_step"] % args["checkpoint_every"] == 0:
                session.checkpoint()
            if state["prior_step"] >= args["prior_steps"] or session.out_of_time():
                stopped = state["prior_step"] < args["prior_steps"]
                break
    bar.close()
    return stopped


def _bilevel_phase(session):
    """Run the truncated bilevel steps, validated at the start and as configured."""
    args, state = session.args, session.state
    if state["val_step"] < 0:
        session.validate()  # the starting point (pretrained prior, untrained curvature)
    sampler, ld = session.loader(args["seed"])
    total = min(args["n_epochs"] * len(ld), args["max_steps"] or np.inf)
    bar = tqdm(total=int(total), initial=state["step"], desc="bilevel",
               disable=not session.show_progress)  # fmt: skip
    stopped = False
    while state["epoch"] < args["n_epochs"] and not stopped:
        sampler.set_epoch(state["epoch"])
        for b, (idx, eeg, src) in enumerate(ld):
            if b < state["batch"]:
                continue
            if args["max_steps"] is not None and state["step"] >= args["max_steps"]:
                stopped = True
                break
            _bilevel_step(session, b, idx, eeg, src, bar)
            if session.out_of_time():
                logger.info(f"Time budget spent after {state['step']} steps.")
                stopped = True
                break
        else:
            state["epoch"] += 1
            state["batch"] = 0
            session.validate()
            session.checkpoint()
            session.log.plot()
    bar.close()


def _bilevel_step(session, b, idx, eeg, src, bar):
    model, args, state, L_t = session.model, session.args, session.state, session.L_t
    eeg, src = _crop(eeg, src, idx, args["crop"], args["seed"], state["epoch"])
    y, x_gt = _prepare(eeg, src, L_t)
    x0 = _start(model, idx, y, L_t, args, state["epoch"])
    session.optimizer.zero_grad(set_to_none=True)
    loss = meta_gradient_step(
        model, y, L_t, x_gt, x0, gradient=args["gradient"],
        jfb_last=args["jfb_last"], jfb_restarts=args["jfb_restarts"],
    )  # fmt: skip
    ok = session.update(session.optimizer, list(model.parameters()))
    state["step"] += 1
    state["batch"] = b + 1
    total_, gt_, prior_ = session.mean_over_ranks(*loss)
    session.log.write(
        phase="bilevel", step=state["step"], epoch=state["epoch"],
        time=session.elapsed(), loss=total_, loss_gt=gt_, loss_prior=prior_,
        skipped=not ok,
    )  # fmt: skip
    bar.update()
    bar.set_postfix(loss=f"{total_:.4f}")
    if args["val_every"] and state["step"] % args["val_every"] == 0:
        session.validate()
    if state["step"] % args["checkpoint_every"] == 0:
        session.checkpoint()


def _train(
    data,
    val_data,
    model,
    leadfield,
    out_dir,
    args,
    *,
    device,
    dtype,
    ctx,
    resume,
    progress,
):
    """Set up a training session, run its two phases, write ``model.pt``."""
    from ..pretrained import save_model

    if args["batch_size"] % ctx.world_size:
        raise ValueError(
            f"batch_size={args['batch_size']} must be a multiple of the number of "
            f"processes ({ctx.world_size})."
        )
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    barrier(ctx)
    dataset = _as_dataset(data)
    _, eeg0, src0 = dataset[0]
    L = _get_leadfield(leadfield, eeg0.shape[0], src0.shape[0])
    L_t = torch.as_tensor(average_reference(L, 0), dtype=dtype, device=device)
    ckpt_file = out_dir / _CHECKPOINT
    checkpoint = None
    if resume and ckpt_file.exists():
        checkpoint = torch.load(ckpt_file, map_location=device, weights_only=True)
        model = checkpoint["model_config"]  # weights loaded below
        logger.info(f"Resuming from {ckpt_file} at {checkpoint['progress']}")
    elif resume:
        logger.info(f"No checkpoint in {out_dir}; starting from scratch.")
    model = _build(model, args, src0.shape[0], device, dtype)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    broadcast_parameters(model, ctx)
    session = _Session(model, dataset, L_t, out_dir, args, ctx, progress)
    if checkpoint is not None:
        session.restore(checkpoint)
    if val_data is not None:
        session.set_validation(val_data, with_template=leadfield is None)
    stopped = _prior_phase(session)
    if not stopped:
        _bilevel_phase(session)
    if session.state["step"] > session.state["val_step"]:
        session.validate()  # the last steps were not validated yet (early stop)
    session.checkpoint()
    session.log.plot()
    if ctx.is_main:
        history = session.log.history
        meta = dict(
            train_args=args,
            progress=dict(session.state),
            validation=[h for h in history if h.get("phase") == "validation"][-1:],
        )
        save_model(model, out_dir / "model.pt", metadata=meta, overwrite=True)
        _complete_best(out_dir / "model_best.pt", history, session.state)
    barrier(ctx)
    return TrainResult(model.eval(), session.log.history, out_dir)


def _complete_best(fname, history, state):
    """Give the kept model's card the run's whole validation history."""
    from ..pretrained import _replace_metadata, load_model

    if not fname.is_file():
        return
    meta = dict(load_model(fname, device="cpu", verbose=False).metadata)
    meta["validation"] = [h for h in history if h.get("phase") == "validation"]
    meta.update(total_steps=state["step"], selected_step=meta["progress"]["step"])
    _replace_metadata(fname, meta)


def _build(model, args, n_sources, device, dtype):
    """Return the model to train: given, or built (seeded) from a config."""
    if model is None:
        model = default_config(n_sources)
    if isinstance(model, dict):
        with torch.random.fork_rng(devices=[]):  # seeded, caller's RNG untouched
            torch.manual_seed(args["seed"])
            model = build_model(model)
    _validate_type(model, LearnedSolver, "model", "MMNet or another LearnedSolver")
    if args["n_iter"] is not None:
        model.n_iter = args["n_iter"]
    if args["init"] is not None:
        model.init = args["init"]
    args["init"] = model.init
    return model.to(device=device, dtype=dtype).train()
