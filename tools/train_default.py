"""Train (or resume) the generalist default model on the broad simulator.

CPU, in the background (both cores), resumable::

    python tools/train_default.py --out pretrained_work/default --minutes 110

GPU (one device, about 10 minutes, weights written under OUT)::

    python tools/train_default.py --out "$OUT/default" --minutes 9 --device cuda

Resume on another machine from a committed weights-only checkpoint with
``--init-from path/to/model_best.pt`` (prior and curvature weights); add
``--carry-on`` to continue its step counters, training time and validation
history (optimiser state starts afresh)::

    python tools/train_default.py --out pretrained_work/more --minutes 80 \
        --prior-steps 100000 --prior-hidden 1024,512 --init-from broad --carry-on

The shipped default ``broad`` (session of 2026-12-02): 2,527 prior steps
(95.6 min of CPU, most of it shared with other jobs), no bilevel step::

    python tools/train_default.py --out pretrained_work/wide --minutes 16 \
        --prior-steps 100000 --threads 1 --prior-hidden 1024,512
    python tools/train_default.py --out pretrained_work/wide --minutes 73 \
        --prior-steps 100000 --threads 2 --prior-hidden 1024,512
    python tools/finish_default.py pretrained_work/wide \
        --curvature-from <previous broad.pt, sha256 a4add3b0...> --n-iter 1,3,10
    python tools/ship_default.py pretrained_work/wide

(the run was created before the solver settings of
:func:`mne_mmnet.training.default_config` changed; ``finish_default`` applies
them). The prior phase depends on the wall time only through where it stops.
"""

import argparse
import logging

import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--prior-lr", type=float, default=1e-3)
    parser.add_argument(
        "--peak-weight",
        type=float,
        default=0.0,
        help="weight of the peak-localisation loss in the prior's pretraining",
    )
    parser.add_argument("--prior-steps", type=int, default=800)
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--prior-val-every", type=int, default=500)
    parser.add_argument("--max-times", type=int, default=160)
    parser.add_argument("--prior-batch-size", type=int, default=None)
    parser.add_argument(
        "--sparse-prob",
        type=float,
        default=0.0,
        help="share of batches with focal sources only (patch orders 0-1)",
    )
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument(
        "--prior-hidden", default=None, help="widths of the prior, e.g. 1024,512"
    )
    parser.add_argument("--preconditioner", default=None)
    parser.add_argument("--init", default=None, help="start of the iterations")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--init-from",
        default=None,
        help="model name or file whose weights seed a new run",
    )
    parser.add_argument(
        "--carry-on",
        action="store_true",
        help="with --init-from: continue its step counters, time and "
        "validation history (a weights-only resume)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("mne").setLevel(logging.INFO)
    from mne_mmnet.pretrained import load_model
    from mne_mmnet.training import default_config
    from mne_mmnet.training.broad import train_broad

    init = None if args.init_from is None else load_model(args.init_from)
    config = default_config()
    if args.prior_hidden:
        config["prior"]["hidden"] = tuple(int(h) for h in args.prior_hidden.split(","))
    if args.preconditioner:
        config["preconditioner"] = args.preconditioner
    if args.init:
        config["init"] = args.init
    best = train_broad(
        args.out,
        minutes=args.minutes,
        seed=args.seed,
        batch_size=args.batch_size,
        lr=args.lr,
        prior_steps=args.prior_steps,
        prior_lr=args.prior_lr,
        peak_weight=args.peak_weight,
        val_every=args.val_every,
        prior_val_every=args.prior_val_every,
        ranges=dict(n_times=(32, args.max_times), sparse_prob=args.sparse_prob),
        init_from=init,
        carry_on=args.carry_on,
        config=config,
        max_steps=args.max_steps,
        prior_batch_size=args.prior_batch_size,
        device=args.device,
        progress=False,
    )
    print(best)


if __name__ == "__main__":
    main()
