"""Plot held-out LE / AUC against training time from a train_log.jsonl.

python tools/plot_training_curve.py RUN_DIR [RUN_DIR ...] --out FIG.png
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    fig, (ax_le, ax_auc) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    for run in args.runs:
        rows = [
            json.loads(line)
            for line in (run / "train_log.jsonl").read_text().splitlines()
        ]
        val = [r for r in rows if r.get("phase") == "validation" and "val_le" in r]
        minutes = [r["time"] / 60 for r in val]
        ax_le.plot(minutes, [r["val_le"] for r in val], "o-", label=run.name)
        ax_auc.plot(minutes, [r["val_auc"] for r in val], "o-", label=run.name)
    ax_le.set(xlabel="training time (min)", ylabel="held-out LE (mm)")
    ax_auc.set(xlabel="training time (min)", ylabel="held-out AUC")
    ax_le.legend(frameon=False)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
