"""Pieces of :func:`mne_mmnet.training.train`: log, checkpoint file, validation.

The run itself (state, prior and bilevel phases) is in ``_session``.
"""

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..problem import average_reference
from ._data import _random_starts
from ._steps import _LOG, _VAL_STREAM
from .distributed import all_reduce_sum
from .losses import meta_loss


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
    keys = ["val_loss"] + (
        ["val_auc", "val_global_le", "val_le"] if with_metrics else []
    )
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
    """Paper's and global localisation errors (mm) and AUC of each sample."""
    from ..metrics import evaluate, global_localization_error

    idx = idx.numpy()
    est = x_hat.detach().cpu().double().numpy()
    res = evaluate(
        est,
        sim.sources[idx],
        seeds=sim.seeds[idx],
        positions=positions,
        adjacency=adjacency,
        sfreq=sim.sfreq,
        active=sim.patch_masks[idx],
        verbose=False,
    )
    global_le = global_localization_error(
        est, sim.sources[idx], seeds=sim.seeds[idx], positions=positions
    )
    return dict(
        val_le=res["localization_error"], val_global_le=global_le, val_auc=res["auc"]
    )


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
