"""Select the number of iterations of a generalist run and write its model_best.pt.

    python tools/finish_default.py pretrained_work/wide --curvature-from broad \
        --n-iter 1,3,10

Takes RUN/checkpoint.pt (the weights of the run as they are), optionally
copies the curvature weights of another model built alike (``--curvature-from``,
for a run whose bilevel phase did not start), takes the solver settings
(start, step, preconditioner, bound) of
:func:`mne_mmnet.training.default_config`, scores every candidate number
of iterations on the run's validation batches (the same 96 broad samples
``train_broad`` validates on), logs each score to RUN/train_log.jsonl and
writes the candidate with the lowest validation global LE (AUC breaks ties,
then fewer iterations) as RUN/model_best.pt for ``tools/ship_default.py``.
"""

import argparse
import json
from pathlib import Path

import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--curvature-from", default=None)
    parser.add_argument("--n-iter", default="1,3,10")
    parser.add_argument("--threads", type=int, default=2)
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    from mne_mmnet.architectures import build_model
    from mne_mmnet.pretrained import load_model, save_model
    from mne_mmnet.training import default_config
    from mne_mmnet.training.broad import _VAL_SEED_OFFSET, _Run, _validate, draw_batch

    ckpt = torch.load(opts.run / "checkpoint.pt", map_location="cpu", weights_only=True)
    # the networks as trained, the solver settings of the shipped design
    config = dict(ckpt["model_config"])
    shipped = default_config()
    for key in ("lam", "gamma", "bound", "step", "init", "safeguard", "guarantee",
                "preconditioner", "preconditioner_reg"):  # fmt: skip
        config[key] = shipped[key]
    model = build_model(config)
    model.load_state_dict(ckpt["model"])
    grafted = None
    if opts.curvature_from:
        donor = load_model(opts.curvature_from, device="cpu")
        if donor.config["curvature"] != model.config["curvature"]:
            raise SystemExit("--curvature-from has another curvature architecture")
        model.curvature.load_state_dict(donor.curvature.state_dict())
        grafted = opts.curvature_from
    args = ckpt["args"]
    run = _Run(opts.run, model, args["lr"], args)
    run.elapsed0 = ckpt["progress"].get("elapsed", 0.0)
    val = [
        draw_batch(
            args["seed"] + _VAL_SEED_OFFSET,
            k,
            args["batch_size"],
            ranges=args["ranges"],
        )  # fmt: skip
        for k in range(args["val_batches"])
    ]
    scores = []
    for n_iter in sorted(int(n) for n in opts.n_iter.split(",")):
        model.n_iter = n_iter
        score = _validate(run, val)
        run.log(phase="validation", step=ckpt["progress"]["step"], n_iter=n_iter,
                curvature_from=grafted, **score)  # fmt: skip
        scores.append((score["val_le"], -score["val_auc"], n_iter, score))
        print(f"n_iter {n_iter}: {score}", flush=True)
    le, _, n_iter, score = min(scores)
    model.n_iter = n_iter
    meta = dict(
        train_args=args,
        progress=dict(ckpt["progress"], elapsed=run.elapsed),
        selection="lowest validation global LE (AUC breaks ties) over the number "
        f"of iterations {opts.n_iter}",
        curvature_from=grafted,
        validation=[h for h in run.history() if h.get("phase") == "validation"],
    )
    save_model(model, opts.run / "model_best.pt", metadata=meta, overwrite=True)
    print(f"selected n_iter {n_iter}: {json.dumps(score)}")


if __name__ == "__main__":
    main()
