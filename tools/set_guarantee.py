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

    python tools/set_guarantee.py checkpoints/broad-candidate.pt certified \
        --ship-as broad
"""

import argparse
import datetime
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
    with tempfile.TemporaryDirectory() as tmp:
        fname = save_model(net, Path(tmp) / f"{Path(name).stem}.pt", metadata=meta,
                           weights_dtype="float16", verbose=False)  # fmt: skip
        dest = _install_shipped_model(fname, name, keep_training_data=True)
    print(f"{opts.name}: guarantee {before} -> {opts.guarantee}; installed {dest}")


if __name__ == "__main__":
    main()
