"""The training engine behind :func:`mne_mmnet.training.train`."""

import json
import os
import time
from pathlib import Path

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
    _random_starts,
    _sample_generator,
    _validation_simulation,
)
from ._steps import (
    _CHECKPOINT,
    _LOG,
    _PRIOR_STREAM,
    _VAL_STREAM,
    TrainResult,
    default_config,
    meta_gradient_step,
)
from .distributed import (
    all_reduce_sum,
    average_gradients,
    barrier,
    broadcast_parameters,
)
from .losses import denoising_loss, meta_loss


class _Logger:
    """JSON-lines log plus loss plot, written by rank 0 only."""

    def __init__(self, out_dir, enabled):
        self.fname = Path(out_dir) / _LOG
        self.enabled = enabled
        self.history = []
        if enabled and self.fname.exists():
            with open(self.fname) as fid:
                self.history = [json.loads(line) for line in fid if line.strip()]

    def write(self, **entry):
        entry = {
            k: (float(v) if isinstance(v, np.floating) else v) for k, v in entry.items()
        }
        self.history.append(entry)
        if self.enabled:
            with open(self.fname, "a") as fid:
                fid.write(json.dumps(entry) + "\n")

    def plot(self):
        if not self.enabled:
            return
        from matplotlib.figure import Figure  # no pyplot: no backend needed

        def rows(phase, key):
            found = [h for h in self.history if h.get("phase") == phase and key in h]
            return [h["step"] for h in found], [h[key] for h in found]

        prior = rows("prior", "loss")
        fig = Figure(figsize=(10 if prior[0] else 7, 4), layout="constrained")
        axes = fig.subplots(1, 2 if prior[0] else 1, squeeze=False)[0]
        axes[-1].plot(*rows("bilevel", "loss"), label="train")
        axes[-1].plot(*rows("validation", "val_loss"), marker="o", label="validation")
        axes[-1].set(xlabel="step", ylabel="meta-loss (eq. 11)", title="bilevel")
        axes[-1].legend()
        if prior[0]:
            axes[0].plot(*prior)
            axes[0].set(
                xlabel="step", ylabel="1 - cos", title="prior denoising pretraining"
            )
        fig.savefig(Path(self.fname).with_name("loss.png"), dpi=100)


def _save_checkpoint(fname, model, optimizer, prior_optimizer, progress, args):
    tmp = Path(fname).with_name(f".{Path(fname).name}.tmp")
    torch.save(
        dict(
            format="mne-mmnet-checkpoint",
            model_config=model.config,
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            prior_optimizer=prior_optimizer.state_dict(),
            progress=dict(progress),
            train_args=args,
        ),
        tmp,
    )
    os.replace(tmp, fname)


def _evaluate(model, val, L_t, args, ctx, *, positions, adjacency):
    """Mean validation meta-loss (and metrics when available) over all ranks."""
    sim, dataset = val
    n = len(dataset)
    with_metrics = sim is not None and positions is not None
    keys = ["val_loss"] + (["val_auc", "val_le"] if with_metrics else [])
    sums = {key: (0.0, 0) for key in keys}  # same keys on every rank
    model.eval()
    idx_all = np.arange(n)[ctx.rank :: ctx.world_size]
    for start in range(0, len(idx_all), args["batch_size"]):
        idx = torch.as_tensor(idx_all[start : start + args["batch_size"]])
        _, eeg, src = zip(*(dataset[int(i)] for i in idx))
        y, x_gt = _prepare(torch.stack(eeg), torch.stack(src), L_t)
        x0 = _start(model, idx, y, L_t, args, _VAL_STREAM)
        with torch.no_grad():
            x_hat, _, _ = model.iterate(x0, y, L_t)
            loss = meta_loss(x_hat, x_gt, model.prior).total
        values = dict(val_loss=loss)
        if with_metrics:
            values.update(_metrics(x_hat, sim, idx, positions, adjacency))
        for key, val_ in values.items():
            total, count = sums[key]
            finite = torch.as_tensor(val_, dtype=torch.float64).reshape(-1)
            finite = finite[torch.isfinite(finite)]
            sums[key] = (total + float(finite.sum()), count + finite.numel())
    model.train()
    out = {}
    for key in sorted(sums):
        t = torch.tensor(sums[key], dtype=torch.float64)
        t = all_reduce_sum(t, ctx)
        out[key] = float(t[0] / t[1]) if t[1] > 0 else float("nan")
    return out


def _metrics(x_hat, sim, idx, positions, adjacency):
    """Localisation error (mm) and AUC of each sample (helper C's metrics)."""
    from ..metrics import evaluate

    idx = idx.numpy()
    res = evaluate(
        x_hat.detach().cpu().double().numpy(),
        sim.sources[idx],
        seeds=sim.seeds[idx],
        positions=positions,
        adjacency=adjacency,
        sfreq=sim.sfreq,
        active=sim.patch_masks[idx],
        verbose=False,
    )
    return dict(val_le=res["localization_error"], val_auc=res["auc"])


def _prepare(eeg, sources, L_t):
    y = average_reference(eeg.to(L_t), 1)
    return y, sources.to(L_t)


def _start(model, indices, y, L_t, args, stream):
    if args["init"] == "random":
        shape = (L_t.shape[1], y.shape[-1])
        return _random_starts(
            indices, shape, args["seed"], stream, dtype=L_t.dtype, device=L_t.device
        )
    return model.initial_estimate(y, L_t, init=args["init"])


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
    if model is None:
        model = default_config(src0.shape[0])
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
    model.to(device=device, dtype=dtype).train()
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    broadcast_parameters(model, ctx)
    optimizer = torch.optim.Adam(model.parameters(), lr=args["lr"])
    prior_params = [] if model.prior is None else list(model.prior.parameters())
    prior_optimizer = torch.optim.Adam(
        prior_params or [torch.zeros(1)], lr=args["prior_lr"]
    )
    state = dict(
        step=0, epoch=0, batch=0, prior_step=0, val_step=-1, best_val=float("inf")
    )
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        prior_optimizer.load_state_dict(checkpoint["prior_optimizer"])
        state.update(checkpoint["progress"])
    if args["grad_clip"] is None:
        args["grad_clip"] = float("inf")
    per_rank = args["batch_size"] // ctx.world_size

    def loader(stream_seed):
        sampler = torch.utils.data.DistributedSampler(
            dataset,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
            shuffle=True,
            seed=stream_seed,
            drop_last=True,
        )
        ld = torch.utils.data.DataLoader(
            dataset, batch_size=per_rank, sampler=sampler, drop_last=True
        )
        if len(ld) == 0:
            raise ValueError(
                f"The training set ({len(dataset)} samples) is smaller than one "
                f"batch ({args['batch_size']}); lower batch_size."
            )
        return sampler, ld

    val = positions = adjacency = None
    if val_data is not None:
        sim = _validation_simulation(val_data, args["val_samples"])
        val_set = _as_dataset(sim if sim is not None else val_data, "val_data")
        n_val = min(len(val_set), args["val_samples"])
        val = (sim, torch.utils.data.Subset(val_set, range(n_val)))
        if leadfield is None:
            from ..forward import read_template_adjacency, read_template_forward

            positions = read_template_forward(verbose=False)["source_rr"]
            adjacency = read_template_adjacency()
    log = _Logger(out_dir, ctx.is_main)
    t_start = time.monotonic()
    budget = float("inf") if args["max_minutes"] is None else 60 * args["max_minutes"]

    def elapsed():
        return time.monotonic() - t_start

    def out_of_time():
        flag = torch.tensor([float(elapsed() > budget)], dtype=torch.float64)
        return bool(all_reduce_sum(flag, ctx)[0] > 0)

    def checkpoint_now():
        if ctx.is_main:
            _save_checkpoint(ckpt_file, model, optimizer, prior_optimizer, state, args)

    def step_update(opt, params):
        average_gradients(model, ctx)
        norm = torch.nn.utils.clip_grad_norm_(params, args["grad_clip"])
        if not torch.isfinite(norm):
            opt.zero_grad(set_to_none=True)
            warn(f"Non-finite gradient at step {state['step']}; step skipped.")
            return False
        opt.step()
        return True

    def mean_over_ranks(*per_sample):
        t = torch.stack(
            [v.double().sum() for v in per_sample]
            + [torch.tensor(float(per_sample[0].numel()))]
        )
        t = all_reduce_sum(t.cpu(), ctx)
        return [float(v / t[-1]) for v in t[:-1]]

    def validate():
        if val is None:
            return
        scores = _evaluate(
            model, val, L_t, args, ctx, positions=positions, adjacency=adjacency
        )
        state["val_step"] = state["step"]
        log.write(
            phase="validation",
            step=state["step"],
            epoch=state["epoch"],
            time=elapsed(),
            **scores,
        )
        # keep the model with the lowest validation meta-loss (the bilevel
        # objective): unrolled training can drift after a good start
        if ctx.is_main and scores["val_loss"] < state["best_val"]:
            state["best_val"] = float(scores["val_loss"])
            meta = dict(
                train_args=args,
                progress=dict(state),
                validation=[dict(step=state["step"], **scores)],
            )
            save_model(model, out_dir / "model_best.pt", metadata=meta, overwrite=True)

    stopped = False
    # ---- phase 1: denoising pretraining of the prior
    if model.prior is not None and state["prior_step"] < args["prior_steps"]:
        sampler, ld = loader(args["seed"] + 1)
        bar = tqdm(
            total=args["prior_steps"],
            initial=state["prior_step"],
            desc="prior",
            disable=not (progress and ctx.is_main),
        )
        while state["prior_step"] < args["prior_steps"] and not stopped:
            epoch, skip = divmod(state["prior_step"], len(ld))
            sampler.set_epoch(epoch)
            for b, (idx, eeg, src) in enumerate(ld):
                if b < skip:
                    continue
                _, src = _crop(eeg, src, idx, args["crop"], args["seed"], epoch)
                gen = _sample_generator(
                    args["seed"],
                    _PRIOR_STREAM,
                    state["prior_step"] * ctx.world_size + ctx.rank,
                    device,
                )
                prior_optimizer.zero_grad(set_to_none=True)
                loss = denoising_loss(
                    model.prior,
                    src.to(L_t),
                    noise_level=args["prior_noise"],
                    generator=gen,
                )
                loss.mean().backward()
                step_update(prior_optimizer, prior_params)
                state["prior_step"] += 1
                (mean,) = mean_over_ranks(loss.detach())
                log.write(
                    phase="prior", step=state["prior_step"], time=elapsed(), loss=mean
                )
                bar.update()
                bar.set_postfix(loss=f"{mean:.4f}")
                if state["prior_step"] % args["checkpoint_every"] == 0:
                    checkpoint_now()
                if state["prior_step"] >= args["prior_steps"] or out_of_time():
                    stopped = state["prior_step"] < args["prior_steps"]
                    break
        bar.close()
    # ---- phase 2: truncated bilevel training
    if not stopped and state["val_step"] < 0:
        validate()  # the starting point (pretrained prior, untrained curvature)
    sampler, ld = loader(args["seed"])
    total = min(args["n_epochs"] * len(ld), args["max_steps"] or np.inf)
    bar = tqdm(
        total=int(total),
        initial=state["step"],
        desc="bilevel",
        disable=not (progress and ctx.is_main),
    )
    while state["epoch"] < args["n_epochs"] and not stopped:
        sampler.set_epoch(state["epoch"])
        for b, (idx, eeg, src) in enumerate(ld):
            if b < state["batch"]:
                continue
            if args["max_steps"] is not None and state["step"] >= args["max_steps"]:
                stopped = True
                break
            eeg, src = _crop(eeg, src, idx, args["crop"], args["seed"], state["epoch"])
            y, x_gt = _prepare(eeg, src, L_t)
            x0 = _start(model, idx, y, L_t, args, state["epoch"])
            optimizer.zero_grad(set_to_none=True)
            loss = meta_gradient_step(
                model,
                y,
                L_t,
                x_gt,
                x0,
                gradient=args["gradient"],
                jfb_last=args["jfb_last"],
                jfb_restarts=args["jfb_restarts"],
            )
            ok = step_update(optimizer, list(model.parameters()))
            state["step"] += 1
            state["batch"] = b + 1
            total_, gt_, prior_ = mean_over_ranks(*loss)
            log.write(
                phase="bilevel",
                step=state["step"],
                epoch=state["epoch"],
                time=elapsed(),
                loss=total_,
                loss_gt=gt_,
                loss_prior=prior_,
                skipped=not ok,
            )
            bar.update()
            bar.set_postfix(loss=f"{total_:.4f}")
            if args["val_every"] and state["step"] % args["val_every"] == 0:
                validate()
            if state["step"] % args["checkpoint_every"] == 0:
                checkpoint_now()
            if out_of_time():
                logger.info(f"Time budget spent after {state['step']} steps.")
                stopped = True
                break
        else:
            state["epoch"] += 1
            state["batch"] = 0
            validate()
            checkpoint_now()
            log.plot()
    bar.close()
    if state["step"] > state["val_step"]:
        validate()  # the last steps were not validated yet (early stop)
    checkpoint_now()
    log.plot()
    if ctx.is_main:
        meta = dict(
            train_args=args,
            progress=dict(state),
            validation=[h for h in log.history if h.get("phase") == "validation"][-1:],
        )
        save_model(model, out_dir / "model.pt", metadata=meta, overwrite=True)
    barrier(ctx)
    return TrainResult(model.eval(), log.history, out_dir)
