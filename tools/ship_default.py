"""Install the best checkpoint of a generalist run as the shipped "broad" model.

    python tools/ship_default.py pretrained_work/default

Copies RUN/model_best.pt into the package with the whole validation history
of the run (every check, also those after the selected one), the total
number of steps and minutes, registers its sha256 and writes the model card.
Also writes a weights-only snapshot of the run in progress (RUN/checkpoint.pt
without optimiser state, float16 weights, < 20 MB) to checkpoints/broad-last.pt
so that training continues on another machine with
``tools/train_default.py --init-from checkpoints/broad-last.pt --carry-on``;
``--snapshot-only`` writes just that snapshot (a run in progress, nothing
installed).
"""

import argparse
import json
import tempfile
from pathlib import Path

import torch

from mne_mmnet.architectures import build_model
from mne_mmnet.pretrained import (
    _SHIPPED_DIR,
    _install_shipped_model,
    load_model,
    save_model,
)
from mne_mmnet.training.broad import BROAD_BATCHES


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--name", default="broad")
    parser.add_argument("--snapshot", type=Path, default=Path("checkpoints"))
    parser.add_argument("--snapshot-only", action="store_true")
    opts = parser.parse_args()
    log = [
        json.loads(x) for x in (opts.run / "train_log.jsonl").read_text().splitlines()
    ]
    history = [h for h in log if h["phase"] == "validation"]
    if not opts.snapshot_only:
        _install(opts, log, history)
    _snapshot(opts, history)


def _install(opts, log, history):
    bilevel = [h for h in log if h["phase"] == "bilevel"]
    best = load_model(opts.run / "model_best.pt", device="cpu")
    meta = dict(best.metadata)
    meta["validation"] = history
    meta["total_steps"] = bilevel[-1]["step"] if bilevel else 0
    meta["total_minutes"] = round(log[-1]["time"] / 60, 1)
    meta["selected_step"] = meta["progress"]["step"]
    meta["weights_dtype"] = "float16 (rounded once after selection; run in float32)"
    with tempfile.TemporaryDirectory() as tmp:
        fname = save_model(
            best, Path(tmp) / f"{opts.name}.pt", metadata=meta, weights_dtype="float16"
        )
        _install_shipped_model(fname, opts.name)
    card_file = _SHIPPED_DIR / f"{opts.name}.json"
    card = json.loads(card_file.read_text())
    card["training_data"] = dict(
        simulator="mne_mmnet.simulation.simulate_broad via "
        "mne_mmnet.training.broad.draw_batch (fresh batches, seed (run seed, step))",
        batch_ranges=meta["train_args"].get("ranges", BROAD_BATCHES),
        seed=meta["train_args"]["seed"],
    )
    card_file.write_text(json.dumps(card, indent=1) + "\n")
    print(f"installed {opts.name}: step {meta['selected_step']} of "
          f"{meta['total_steps']}, {meta['total_minutes']} min")  # fmt: skip


def _snapshot(opts, history):
    ckpt = torch.load(opts.run / "checkpoint.pt", map_location="cpu", weights_only=True)
    snap = build_model(ckpt["model_config"])
    snap.load_state_dict(ckpt["model"])
    opts.snapshot.mkdir(parents=True, exist_ok=True)
    out = save_model(
        snap, opts.snapshot / f"{opts.name}-last.pt", overwrite=True,
        weights_dtype="float16",
        metadata=dict(progress=ckpt["progress"], args=ckpt["args"],
                      validation=history),
    )  # fmt: skip
    print(
        f"weights-only snapshot of {ckpt['progress']}: {out} "
        f"({out.stat().st_size / 2**20:.1f} MB)"
    )


if __name__ == "__main__":
    main()
