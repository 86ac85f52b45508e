"""``mne-mmnet train``: train MM-Net on simulated data."""

import argparse
import json
import os
from pathlib import Path


def _int_tuple(text):
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 256,128, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_parser(subparsers):
    """Add the ``train`` sub-command."""
    p = subparsers.add_parser(
        "train",
        help="train MM-Net (truncated bilevel, Algorithm 1) on simulated data",
        description=(
            "Train MM-Net on a simulation directory written by `mne-mmnet "
            "simulate`. Model options left out take the settings of the shipped "
            "default model (mne_mmnet.training.default_config). Run under "
            "`torchrun --nproc_per_node N` for data-parallel training (gloo on "
            "CPU, NCCL on GPU)."
        ),
    )
    add = p.add_argument
    add("--data", required=True, type=Path, help="training simulation directory")
    add("--val-data", type=Path, help="validation simulation directory")
    add(
        "--out",
        required=True,
        type=Path,
        help="output directory (checkpoint, train_log.jsonl, loss.png, model.pt)",
    )
    _add_model_options(p.add_argument_group("model"))
    _add_optimisation_options(p.add_argument_group("optimisation"))
    _add_run_options(p.add_argument_group("run"))
    p.set_defaults(func=_run)
    return p


def _add_model_options(g):
    """Add the model's options: every default is the shipped default model's."""
    g.add_argument(
        "--config",
        type=Path,
        help="JSON model config (MMNet.config); overrides the options below",
    )
    g.add_argument(
        "--architecture",
        choices=("mmnet", "4dvarnet", "meta-curvature", "modgrad", "optenet", "eunet"),
        default="mmnet",
        help="the learned solver to train: MM-Net (default) or a learned baseline "
        "of the benchmark (with its default size; --prior-hidden, --n-iter and "
        "--init apply to it too)",
    )
    g.add_argument(
        "--prior-hidden",
        type=_int_tuple,
        help="hidden channels of the autoencoder prior (default 1024,512)",
    )
    g.add_argument("--curvature-embed", type=int, help="default 64")
    g.add_argument("--curvature-hidden", type=int, help="default 64")
    g.add_argument(
        "--bound",
        choices=("analytic", "hvp", "none"),
        help="projection bound (default analytic); 'none' trains R-MM-Net",
    )
    g.add_argument(
        "--no-safeguard",
        action="store_true",
        help="take every step even if it increases the energy (with --bound none: "
        "the paper's unguarded R-MM-Net)",
    )
    g.add_argument("--n-iter", type=int, help="inner MM iterations (default 3)")
    g.add_argument(
        "--step",
        choices=("diagonal", "directional"),
        help="diagonal MM step (the paper's) or a step along p * g (default)",
    )
    g.add_argument(
        "--gamma",
        type=float,
        default=None,
        help="relaxation in (0, 2); default 1.999 (diagonal) or 1 (directional)",
    )
    g.add_argument(
        "--init",
        choices=("random", "mne", "sloreta", "prior"),
        help="start of the iterations (default prior: the prior at sLORETA)",
    )
    g.add_argument(
        "--preconditioner",
        choices=("diagonal", "leadfield"),
        help="step metric (default leadfield)",
    )
    g.add_argument(
        "--leadfield",
        type=Path,
        help=".npy leadfield (n_channels, n_sources); default the template",
    )


def _add_optimisation_options(o):
    o.add_argument("--epochs", type=int, default=10)
    o.add_argument("--max-steps", type=int)
    o.add_argument("--batch-size", type=int, default=8, help="global batch size")
    o.add_argument("--lr", type=float, default=5e-4)
    o.add_argument("--gradient", choices=("full", "jfb"), default="full")
    o.add_argument("--jfb-last", type=int, default=1)
    o.add_argument("--jfb-restarts", type=int, default=0)
    o.add_argument(
        "--prior-steps",
        type=int,
        default=0,
        help="denoising pretraining steps of the prior",
    )
    o.add_argument("--prior-lr", type=float, default=1e-3)
    o.add_argument("--prior-noise", type=float, default=0.5)
    o.add_argument("--crop", type=int, help="train on windows of this many samples")
    o.add_argument("--grad-clip", type=float, default=1.0)


def _add_run_options(r):
    r.add_argument("--checkpoint-every", type=int, default=100)
    r.add_argument(
        "--resume", action="store_true", help="continue from OUT/checkpoint.pt"
    )
    r.add_argument(
        "--max-minutes",
        type=float,
        help="stop cleanly (checkpoint + model) after this long",
    )
    r.add_argument("--val-samples", type=int, default=256)
    r.add_argument(
        "--val-every",
        type=int,
        default=None,
        help="also validate every N steps; the best model is model_best.pt",
    )
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default=None, help="cpu, cuda, cuda:N")
    r.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    r.add_argument("--threads", type=int, help="torch CPU threads")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--verbose", default="info")


def _mmnet_config(args, n_sources):
    """Return the default model's configuration with the given options set."""
    from .loop import default_config

    config = default_config(n_sources)
    if args.prior_hidden is not None:
        config["prior"]["hidden"] = list(args.prior_hidden)
    for key in ("embed", "hidden"):
        value = getattr(args, f"curvature_{key}")
        if value is not None:
            config["curvature"][key] = value
    given = dict(
        n_iter=args.n_iter,
        init=args.init,
        step=args.step,
        preconditioner=args.preconditioner,
        gamma=args.gamma,
    )
    config.update({key: value for key, value in given.items() if value is not None})
    if args.bound is not None:
        config["bound"] = None if args.bound == "none" else args.bound
    if args.no_safeguard:
        config["safeguard"] = False
    if args.gamma is None and args.step is not None:
        config["gamma"] = 1.0 if args.step == "directional" else 1.999
    return config


def _run(args):
    import numpy as np
    import torch

    from ..simulation.io import _read_manifest
    from .loop import train

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.config is not None:
        config = json.loads(args.config.read_text())
    elif args.architecture != "mmnet":
        from ..learned_baselines import baseline_config

        manifest = _read_manifest(args.data)
        given = dict(prior_hidden=args.prior_hidden, n_iter=args.n_iter, init=args.init)
        config = baseline_config(
            args.architecture,
            n_sources=int(manifest["n_sources"]),
            n_times=int(args.crop or manifest["n_times"]),
            **{key: value for key, value in given.items() if value is not None},
        )
    else:
        config = _mmnet_config(args, int(_read_manifest(args.data)["n_sources"]))
    leadfield = None if args.leadfield is None else np.load(args.leadfield)
    result = train(
        args.data,
        out_dir=args.out,
        val_data=args.val_data,
        model=config,
        leadfield=leadfield,
        n_epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        gradient=args.gradient,
        jfb_last=args.jfb_last,
        jfb_restarts=args.jfb_restarts,
        prior_steps=args.prior_steps,
        prior_lr=args.prior_lr,
        prior_noise=args.prior_noise,
        crop=args.crop,
        grad_clip=args.grad_clip,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        max_minutes=args.max_minutes,
        val_samples=args.val_samples,
        val_every=args.val_every,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        progress=not args.no_progress,
        verbose=args.verbose,
    )
    steps = [h for h in result.history if h.get("phase") == "bilevel"]
    if steps and int(os.environ.get("RANK", "0")) == 0:
        print(
            f"Trained {steps[-1]['step']} steps; last meta-loss "
            f"{steps[-1]['loss']:.4f}; model: {result.out_dir / 'model.pt'}"
        )
    return 0
