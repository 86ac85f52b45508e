"""State of a broad training run: checkpoint, log, clock, exact resume, warm start."""

import json
import os
import time
from pathlib import Path

import torch
from mne.utils import _check_option, logger

_CHECKPOINT = "checkpoint.pt"
_LOG = "train_log.jsonl"
#: the parts of a model that a run can warm-start and freeze
_PARTS = ("prior", "curvature", "gate")


class _Run:
    """Model, optimiser, progress and files of one training run."""

    def __init__(self, out_dir, model, lr, args):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        self.prior_optimizer = torch.optim.Adam(
            model.prior.parameters(), lr=args["prior_lr"]
        )
        self.progress = dict(step=0, prior_step=0, best_le=float("inf"), best_auc=0.0)
        self.args = args
        self.t0 = time.monotonic()
        self.elapsed0 = 0.0

    @property
    def elapsed(self):
        return self.elapsed0 + time.monotonic() - self.t0

    def log(self, **entry):
        entry["time"] = round(self.elapsed, 1)
        with open(self.out_dir / _LOG, "a") as fid:
            fid.write(json.dumps(entry) + "\n")

    def history(self):
        fname = self.out_dir / _LOG
        if not fname.exists():
            return []
        return [json.loads(line) for line in fname.read_text().splitlines() if line]

    def save(self):
        tmp = self.out_dir / f".{_CHECKPOINT}.tmp"
        torch.save(
            dict(
                model_config=self.model.config,
                model=self.model.state_dict(),
                optimizer=self.optimizer.state_dict(),
                prior_optimizer=self.prior_optimizer.state_dict(),
                progress=dict(self.progress, elapsed=self.elapsed),
                args=self.args,
            ),
            tmp,
        )
        os.replace(tmp, self.out_dir / _CHECKPOINT)

    def restore(self):
        fname = self.out_dir / _CHECKPOINT
        if not fname.exists():
            return False
        ckpt = torch.load(fname, map_location="cpu", weights_only=True)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.prior_optimizer.load_state_dict(ckpt["prior_optimizer"])
        # the learning rates are this call's (a resume with the same arguments
        # is exact; a lower rate anneals a run)
        for opt, key in ((self.optimizer, "lr"), (self.prior_optimizer, "prior_lr")):
            for group in opt.param_groups:
                if group["lr"] != self.args[key]:
                    logger.info(f"{key}: {group['lr']:g} -> {self.args[key]:g}")
                group["lr"] = self.args[key]
        self.elapsed0 = ckpt["progress"].pop("elapsed", 0.0)
        self.progress.update(ckpt["progress"])
        # entries logged after the checkpoint are redone by this run
        kept = [h for h in self.history() if _before(h, self.progress)]
        lines = "".join(json.dumps(h) + "\n" for h in kept)
        (self.out_dir / _LOG).write_text(lines)
        logger.info(f"Resumed at {self.progress}")
        return True


def _before(entry, progress):
    """Whether a log entry was written at or before the counters ``progress``.

    Counters, not logged times, decide: a time is rounded when logged and
    can land on either side of the checkpoint's.
    """
    step, prior_step = progress["step"], progress["prior_step"]
    if entry["phase"] == "prior":
        return entry["step"] <= prior_step
    if entry["phase"] == "validation" and entry["step"] == 0:
        return step > 0 or entry.get("prior_step", 0) <= prior_step
    return entry["step"] <= step


class _Clock:
    """Deadline of the call and the time of the last checkpoint."""

    def __init__(self, minutes, checkpoint_minutes):
        self.deadline = time.monotonic() + 60 * minutes
        self.every = 60 * checkpoint_minutes
        self.last = time.monotonic()

    @property
    def running(self):
        return time.monotonic() < self.deadline

    def maybe_save(self, run):
        if time.monotonic() - self.last > self.every:
            run.save()
            self.last = time.monotonic()


def _validated_at(run, *, step, prior_step):
    """Whether this run (not an earlier one) already validated at these counters."""
    return any(
        e["phase"] == "validation" and not e.get("earlier_run")
        and (e["step"], e.get("prior_step", prior_step)) == (step, prior_step)
        for e in run.history()
    )  # fmt: skip


def _warm_start(model, init):
    """Copy the prior's, the curvature's and the gate's weights where built alike.

    Returns the names of the parts copied.
    """
    copied = []
    for part in _PARTS:
        theirs, ours = getattr(init, part, None), getattr(model, part, None)
        if theirs is not None and ours is not None:
            if init.config.get(part) == model.config.get(part):
                ours.load_state_dict(theirs.state_dict())
                copied.append(part)
    logger.info(f"Warm start from the given model's {', '.join(copied) or 'nothing'}")
    return copied


def _check_parts(freeze):
    """Return the names in ``freeze`` as a tuple, each one of the model's parts."""
    freeze = tuple(freeze)
    for part in freeze:
        _check_option("freeze", part, _PARTS)
    return freeze


def _freeze(model, freeze):
    """Exclude the parts ``freeze`` names (checked by :func:`_check_parts`)."""
    for part in freeze:
        module = getattr(model, part)
        if module is None:
            raise ValueError(f"freeze names {part!r}, which this model does not have.")
        module.requires_grad_(False)
    if freeze:
        logger.info(f"Frozen: {', '.join(freeze)}")


def _carry_on(run, init):
    """Take over the step counters, time and validation history of ``init``.

    For a run continued from a weights-only file (a shipped model or a
    snapshot): the optimisers start afresh, everything else counts on.
    """
    meta = getattr(init, "metadata", None) or {}
    done = meta.get("progress")
    if not done:
        raise ValueError(
            "carry_on=True needs a model file whose metadata holds the progress "
            "of its run (a model saved by train_broad or tools/ship_default.py)"
        )
    run.progress.update(step=int(done["step"]), prior_step=int(done["prior_step"]))
    run.elapsed0 = float(done.get("elapsed", 0.0))
    with open(run.out_dir / _LOG, "a") as fid:
        for entry in meta.get("validation", []):
            fid.write(json.dumps(dict(entry, earlier_run=True)) + "\n")
    logger.info(f"Carrying on from {run.progress} after {run.elapsed0 / 60:.1f} min")
