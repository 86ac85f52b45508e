"""Make the shipped Table I replicas exactly sign-equivariant (weights unchanged).

The ``sereega`` / ``nmm`` models (and their R-MM-Net twins) were trained on
positive sources only. This rebuilds each shipped file with the same weights
and two architecture switches that make the solver equivariant by
construction: the prior becomes the odd part of its network,
``Phi(x) = (N(x) - N(-x)) / 2``, and the curvature model is symmetrised (run
on ``(g, x)`` and ``(-g, -x)`` with separate states, log-steps averaged).
Registry sha256 and model cards are updated; the cards keep their training
records and note the conversion. Idempotent::

    python tools/make_equivariant_replicas.py
"""

import json
import tempfile
from pathlib import Path

from mne_mmnet.networks.base import build_model
from mne_mmnet.pretrained import (
    _SHIPPED_DIR,
    _install_shipped_model,
    _read_model_file,
    save_model,
)

NAMES = ("sereega", "nmm", "sereega-unprojected", "nmm-unprojected")
NOTE = (
    "converted to sign-equivariant form after training (odd prior, symmetrised "
    "curvature; weights unchanged) by tools/make_equivariant_replicas.py"
)


def main():
    for name in NAMES:
        fname = _SHIPPED_DIR / f"{name}.pt"
        content = _read_model_file(fname, "")
        config = content["config"]
        config["prior"]["odd"] = True
        config["curvature"]["symmetrize"] = True
        net = build_model(config)
        net.load_state_dict(content["state_dict"], strict=True)
        metadata = dict(content.get("metadata", {}))
        metadata["conversion"] = NOTE
        with tempfile.TemporaryDirectory() as tmp:
            out = save_model(net, Path(tmp) / f"{name}.pt", metadata=metadata)
            _install_shipped_model(out, name, keep_training_data=True)
        card = json.loads((_SHIPPED_DIR / f"{name}.json").read_text())
        print(f"{name}: {card['sha256']}")


if __name__ == "__main__":
    main()
