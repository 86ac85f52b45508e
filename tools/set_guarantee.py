"""Re-ship a model with another step guarantee (same weights, same card data).

    python tools/set_guarantee.py broad certified

Loads the shipped model, sets ``guarantee`` (``"checked"``: steps accepted
when their evaluated energy did not rise; ``"certified"``: every step cut to
the minimiser of a majorant valid on its whole segment, see
:mod:`mne_mmnet.solver.segment`), records the change in the metadata
(``guarantee_set``) and installs it under the same name: new sha256 in the
registry, model card rewritten with its training-data record kept. The
weights are stored in float16 as before, so they are unchanged bit for bit.
The default ``broad`` is rebuilt by ``tools/train_gate.py --ship`` followed
by this script. ``--out PATH`` writes the model there instead of installing
it (``name`` may then be a model file, e.g. a candidate to benchmark)::

    python tools/set_guarantee.py W/gate_v3/model.pt certified --out W/cand.pt

``--ship-as NAME`` installs a model file under that shipped name::

    python tools/set_guarantee.py W/cand.pt certified \
        --ship-as broad

A model whose prior continued training from the shipped one on other batches
(a ``--carry-on`` snapshot: its metadata has ``args``, not ``train_args``)
gets a card that records both stages: the kept record up to the step the
continuation started from, then the continuation's batch ranges.
"""

import argparse
import datetime
import json
import tempfile
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("guarantee", choices=("checked", "certified"))
    parser.add_argument("--out", type=Path, help="write here, do not install")
    parser.add_argument("--ship-as", help="install under this name (default: name)")
    opts = parser.parse_args()
    from mne_mmnet.pretrained import _install_shipped_model, load_model, save_model

    net = load_model(opts.name, verbose=False)
    before = net.guarantee
    net.guarantee = opts.guarantee
    meta = dict(getattr(net, "metadata", {}))
    meta["guarantee_set"] = dict(
        command=f"python tools/set_guarantee.py {opts.name} {opts.guarantee}",
        previous=before,
        date=datetime.date.today().isoformat(),
    )
    if opts.out is not None:
        save_model(net, opts.out, metadata=meta, weights_dtype="float16",
                   overwrite=True, verbose=False)  # fmt: skip
        print(f"{opts.name}: guarantee {before} -> {opts.guarantee}; wrote {opts.out}")
        return
    name = opts.ship_as or opts.name
    continued = "args" in meta and "train_args" not in meta
    if continued:
        meta["train_args"] = meta.pop("args")
        meta["selection"] = "lowest validation global LE (AUC breaks ties)"
    with tempfile.TemporaryDirectory() as tmp:
        fname = save_model(net, Path(tmp) / f"{Path(name).stem}.pt", metadata=meta,
                           weights_dtype="float16", verbose=False)  # fmt: skip
        dest = _install_shipped_model(fname, name, keep_training_data=True)
    if continued:
        _record_continuation(dest.with_suffix(".json"), meta)
    print(f"{opts.name}: guarantee {before} -> {opts.guarantee}; installed {dest}")


def _record_continuation(card_file, meta):
    """Write both training stages of a continued prior into the model card."""
    card = json.loads(card_file.read_text())
    runs = [h for h in meta["validation"] if not h.get("earlier_run")]
    start = min(h["prior_step"] for h in runs if "prior_step" in h)
    args = meta["train_args"]
    card["training_data"] = dict(
        stages=[
            dict(card["training_data"], prior_steps=[0, start]),
            dict(
                simulator=card["training_data"].get("simulator"),
                batch_ranges=args["ranges"],
                seed=args["seed"],
                prior_steps=[start, meta["progress"]["prior_step"]],
            ),
        ]
    )
    card_file.write_text(json.dumps(card, indent=1) + "\n")


if __name__ == "__main__":
    main()
