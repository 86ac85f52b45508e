"""Compare models on held-out validation batches of the broad simulator, paired.

    python tools/compare_models.py broad pretrained_work/prior3/model_best.pt \
        --first 12 --batches 40

Scores each model (a shipped name or a file) with its own settings on the
validation stream of ``train_broad`` (seed 0 + 7,919, batches of 8, windows of
32-160 samples), batches ``first`` to ``first + batches - 1``. ``train_broad``
selects checkpoints on batches 0-11, so the default ``--first 12`` gives
samples no selection has seen. Prints mean global LE (mm) and AUC per model,
and each model's paired difference in global LE to the first model with its
standard error (the same samples for every model).
"""

import argparse

import numpy as np
import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--first", type=int, default=12)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    from mne_mmnet.pretrained import load_model
    from mne_mmnet.training.broad import _VAL_SEED_OFFSET, _scores, draw_batch

    models = [load_model(m, device="cpu", verbose=False).eval() for m in opts.models]
    les = [[] for _ in models]
    aucs = [[] for _ in models]
    for k in range(opts.first, opts.first + opts.batches):
        batch = draw_batch(_VAL_SEED_OFFSET, k, 8, ranges=dict(n_times=(32, 160)))
        y, L = batch["y"], batch["L"]
        for j, model in enumerate(models):
            with torch.no_grad():
                x_hat = model.iterate(model.initial_estimate(y, L), y, L)[0]
            le, area = _scores(x_hat, batch["sim"])
            les[j].append(le)
            aucs[j].append(area)
    les = [np.concatenate(v) for v in les]
    n = len(les[0])
    for name, le, area in zip(opts.models, les, aucs):
        diff = le - les[0]
        print(
            f"{name:45s} global LE {le.mean():6.2f} mm  AUC "
            f"{np.nanmean(np.concatenate(area)):.3f}  vs first "
            f"{diff.mean():+.2f} +- {diff.std(ddof=1) / np.sqrt(n):.2f} mm (n={n})"
        )


if __name__ == "__main__":
    main()
