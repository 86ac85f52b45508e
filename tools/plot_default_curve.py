"""Validation global LE and AUC against training time, from a model card.

    python tools/plot_default_curve.py mne_mmnet/data/models/broad.json \
        --out benchmarks/results/training_curve_broad.png

Also prints the validation history. The sLORETA line is computed on the same
validation batches (draw_batch with the run's validation seed).
"""

import argparse
import json
from pathlib import Path

import numpy as np


def _sloreta_reference(args):
    from mne_mmnet.solver import initial_estimate
    from mne_mmnet.training.broad import _VAL_SEED_OFFSET, _scores, draw_batch

    les, aucs = [], []
    for k in range(args["val_batches"]):
        batch = draw_batch(args["seed"] + _VAL_SEED_OFFSET, k, args["batch_size"],
                           ranges=args["ranges"])  # fmt: skip
        x = initial_estimate(batch["y"], batch["L"], init="sloreta")
        le, area = _scores(x, batch["sim"])
        les.append(le)
        aucs.append(area)
    return float(np.mean(np.concatenate(les))), float(np.nanmean(np.concatenate(aucs)))


def main():
    from matplotlib.figure import Figure

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("card", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    opts = parser.parse_args()
    card = json.loads(opts.card.read_text())
    meta = card["metadata"]
    history = meta["validation"]
    minutes = [h["time"] / 60 for h in history]
    for h in history:
        print(f"step {h['step']:5d}  {h['time'] / 60:6.1f} min  global LE "
              f"{h['val_le']:.2f} mm  AUC {h['val_auc']:.3f}")  # fmt: skip
    le_ref, auc_ref = _sloreta_reference(meta["train_args"])
    print(f"sLORETA on the same validation set: {le_ref:.2f} mm, AUC {auc_ref:.3f}")
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax_le, ax_auc = fig.subplots(1, 2)
    ax_le.plot(minutes, [h["val_le"] for h in history], marker="o", label=card["name"])
    ax_le.axhline(le_ref, color="k", ls="--", label="sLORETA")
    ax_le.set(xlabel="training time (min)", ylabel="validation global LE (mm)")
    ax_auc.plot(minutes, [h["val_auc"] for h in history], marker="o")
    ax_auc.axhline(auc_ref, color="k", ls="--")
    ax_auc.set(xlabel="training time (min)", ylabel="validation AUC")
    ax_le.legend()
    total = meta.get("total_steps", meta["progress"]["step"])
    fig.suptitle(
        f"{card['name']}: broad validation mix ({len(history)} checks, {total} "
        f"steps; shipped: step {meta['progress']['step']})"
    )
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(opts.out, dpi=100)
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
