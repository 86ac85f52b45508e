"""Score the start and the iterations of a run's checkpoint on validation batches.

    python tools/eval_checkpoint.py RUN_OR_MODEL_FILE [--batches 6] [--threads 1]

Prints mean global LE (mm) and AUC on the first ``--batches`` validation
batches of ``train_broad`` (8 samples each, seed 7919) for: the sLORETA
estimate, the prior's output at it (``init="prior"``), 10 MM iterations from
sLORETA with the model's own preconditioner, and 10 MM iterations from the
prior start with the diagonal and the leadfield preconditioner. Used for
the equal-budget ablation of the prior width (README, "Pretrained models").
"""

import argparse
from pathlib import Path

import numpy as np
import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    from mne_mmnet.architectures import build_model
    from mne_mmnet.pretrained import load_model
    from mne_mmnet.training.broad import _VAL_SEED_OFFSET, _scores, draw_batch

    if opts.run.is_file():  # a model file: the validation batches of seed 0
        model = load_model(opts.run, device="cpu")
        seed, batch_size = _VAL_SEED_OFFSET, 8
    else:
        ckpt = torch.load(
            opts.run / "checkpoint.pt", map_location="cpu", weights_only=True
        )
        model = build_model(ckpt["model_config"])
        model.load_state_dict(ckpt["model"])
        print(f"{opts.run}: {ckpt['progress']}")
        seed = ckpt["args"]["seed"] + _VAL_SEED_OFFSET
        batch_size = ckpt["args"]["batch_size"]
    model.eval()
    own = model.preconditioner
    rows = {}
    for k in range(opts.batches):
        batch = draw_batch(seed, k, batch_size)
        y, L = batch["y"], batch["L"]
        with torch.no_grad():
            start = model.initial_estimate(y, L, init="prior")
            x_s = model.initial_estimate(y, L, init="sloreta")
            model.preconditioner = own
            out = {
                "sLORETA": x_s,
                "prior start": start,
                f"10 MM iterations from sLORETA, {own}": model.iterate(x_s, y, L)[0],
            }
            for kind in ("diagonal", "leadfield"):
                model.preconditioner = kind
                out[f"10 MM iterations, {kind}"] = model.iterate(start, y, L)[0]
        for name, x in out.items():
            le, area = _scores(x, batch["sim"])
            rows.setdefault(name, ([], []))
            rows[name][0].append(le)
            rows[name][1].append(area)
    n = 8 * opts.batches
    for name, (le, area) in rows.items():
        le, area = np.concatenate(le).mean(), np.nanmean(np.concatenate(area))
        print(f"{name:32s} global LE {le:6.2f} mm  AUC {area:.3f}  (n={n})")


if __name__ == "__main__":
    main()
