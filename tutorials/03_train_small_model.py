"""
.. _tut-train:

Training a small model on your own simulation
=============================================

MM-Net is trained by truncated bilevel optimisation: unrolled MM iterations
inside, a meta-loss against the ground truth outside. This tutorial trains a
tiny model for a few steps so that it runs in a minute; the shipped models
were trained with ``tools/train_pretrained.sh``.
"""

# %%
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import mne

import mne_mmnet

mne.set_log_level("WARNING")
fwd = mne_mmnet.read_template_forward()
train_set = mne_mmnet.simulate_sereega(64, seed=100, snr_db=5.0, fwd=fwd)
val_set = mne_mmnet.simulate_sereega(16, seed=101, snr_db=5.0, fwd=fwd)

# %%
# A small configuration: a two-layer prior and a narrow curvature model.
config = mne_mmnet.training.default_config()
config["prior"]["hidden"] = (32,)
config["curvature"].update(embed=8, hidden=8)
config["init"] = "sloreta"
out = Path(tempfile.mkdtemp())
result = mne_mmnet.train(
    train_set,
    val_data=val_set,
    out_dir=out,
    model=config,
    leadfield=fwd,
    n_epochs=1,
    max_steps=8,
    batch_size=8,
    lr=1e-3,
    gradient="jfb",
    jfb_last=1,
    prior_steps=20,
    val_samples=16,
    seed=0,
    device="cpu",
    progress=False,
)

# %%
# The JSON-lines log holds every step's meta-loss.
log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
steps = [r for r in log if r.get("phase") == "bilevel" and "loss" in r]
plt.plot([r["step"] for r in steps], [r["loss"] for r in steps])
plt.xlabel("step")
plt.ylabel("meta-loss")
plt.show()
model = mne_mmnet.load_model(out / "model.pt")
print(model)
