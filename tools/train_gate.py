"""Fit the start gate of the default model and (optionally) ship the result.

    python tools/train_gate.py --out pretrained_work/gate --train-batches 1200 \
        --val-batches 300 --seed 20261206 --workers 2 [--ship]

Loads the shipped ``broad`` (or ``--model``), simulates ``--train-batches``
and ``--val-batches`` batches of 16 from the broad simulator
(:data:`mne_mmnet.training.gate.GATE_BATCHES`: a third of them focal, seeds
``seed`` and ``seed + 1``; ``--nmm-prob``: that share of the batches from
the neural-mass simulator instead), measures the global LE of both starts (the
sparse subspace scan and the prior's output at the sLORETA estimate), fits
:class:`mne_mmnet.networks.StartGate` with
:func:`mne_mmnet.training.gate.fit_start_gate` and writes OUT/model.pt: the
same prior and curvature with ``init="gated"`` and the gate, its training
record in the metadata (``start_gate``). The gate is fitted in float64 and
stored in float16 like the other weights; the validation figures printed are
those of the stored (rounded) gate. ``--ship`` installs OUT/model.pt as
``broad`` (or ``--ship-as``; sha256 in the registry, model card rewritten,
its training-data record kept). Examples are kept
in OUT/examples.pt, so that a rerun with other fitting options (``--refit``)
does not simulate again (it takes the simulation options stored with them).
"""

import argparse
import copy
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch


def _examples(job):
    model_name, seed, first, count, ranges = job
    torch.set_num_threads(1)
    from mne_mmnet.pretrained import load_model
    from mne_mmnet.training.gate import gate_examples

    net = load_model(model_name, verbose=False)
    return gate_examples(
        net, seed=seed, n_batches=count, first_batch=first, ranges=ranges
    )


def _simulate(model_name, seed, n_batches, workers, ranges):
    edges = np.linspace(0, n_batches, workers + 1).astype(int)
    jobs = [(model_name, seed, int(a), int(b - a), ranges)
            for a, b in zip(edges, edges[1:])]  # fmt: skip
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_examples, jobs))
    return dict(
        features=torch.cat([p["features"] for p in parts]),
        le_linear=np.concatenate([p["le_linear"] for p in parts]),
        le_prior=np.concatenate([p["le_prior"] for p in parts]),
    )


def _summary(gate, examples):
    from mne_mmnet.training.gate import _chosen_le, _expected_le

    gate = copy.deepcopy(gate).double()
    with torch.no_grad():
        expected = float(_expected_le(gate, examples))
        chosen = _chosen_le(gate, examples)
        g = torch.sigmoid(gate.logit(examples["features"]))
    return dict(
        n=len(examples["le_linear"]),
        le_linear=float(examples["le_linear"].mean()),
        le_prior=float(examples["le_prior"].mean()),
        le_oracle=float(np.minimum(examples["le_linear"], examples["le_prior"]).mean()),
        le_gate_expected=expected,
        le_gate_chosen=chosen,
        share_linear=float((g > 0.5).double().mean()),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="broad")
    parser.add_argument("--train-batches", type=int, default=1200)
    parser.add_argument("--val-batches", type=int, default=300)
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hidden", default="32,32")
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--weight-decay", type=float, default=1e-3)
    parser.add_argument(
        "--nmm-prob", type=float, default=0.0,
        help="share of batches from the neural-mass simulator",
    )  # fmt: skip
    parser.add_argument("--refit", action="store_true", help="reuse OUT/examples.pt")
    parser.add_argument("--ship", action="store_true")
    parser.add_argument("--ship-as", default="broad", help="shipped name (--ship)")
    opts = parser.parse_args()
    from mne_mmnet.pretrained import load_model, save_model
    from mne_mmnet.training.gate import GATE_BATCHES, fit_start_gate

    opts.out.mkdir(parents=True, exist_ok=True)
    cache = opts.out / "examples.pt"
    start = time.time()
    sim_args = ("model", "train_batches", "val_batches", "seed", "nmm_prob")
    if opts.refit:  # the examples and the options that simulated them
        saved = torch.load(cache, weights_only=False)
        train, val = saved["train"], saved["val"]
        for key in sim_args:
            setattr(opts, key, saved["options"].get(key, 0.0))
    ranges = dict(GATE_BATCHES, nmm_prob=opts.nmm_prob)
    if not opts.refit:
        train = _simulate(opts.model, opts.seed, opts.train_batches, opts.workers,
                          ranges)  # fmt: skip
        val = _simulate(opts.model, opts.seed + 1, opts.val_batches, opts.workers,
                        ranges)  # fmt: skip
        options = {key: getattr(opts, key) for key in sim_args}
        torch.save(dict(train=train, val=val, options=options), cache)
    minutes = (time.time() - start) / 60
    print(f"examples: {len(train['le_linear'])} train, {len(val['le_linear'])} "
          f"validation ({minutes:.1f} min)", flush=True)  # fmt: skip
    hidden = tuple(int(h) for h in opts.hidden.split(","))
    gate, history = fit_start_gate(
        train, val, hidden=hidden, seed=opts.seed, epochs=opts.epochs,
        weight_decay=opts.weight_decay,
    )  # fmt: skip
    gate = gate.half().float()  # as stored
    net = load_model(opts.model, verbose=False)
    net.gate, net.init = gate, "gated"
    record = dict(
        command="python tools/train_gate.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(opts).items()
            if k not in ("out", "refit", "ship", "ship_as", "workers")
        ),  # fmt: skip
        batches=dict(ranges, batch_size=16, seeds=[opts.seed, opts.seed + 1]),
        history=history,
        train=_summary(gate, train),
        validation=_summary(gate, val),
    )
    meta = dict(getattr(net, "metadata", {}), start_gate=record)
    fname = save_model(net, opts.out / "model.pt", metadata=meta, overwrite=True,
                       weights_dtype="float16", verbose=False)  # fmt: skip
    print(json.dumps(dict(validation=record["validation"]), indent=1))
    print(f"wrote {fname}")
    if opts.ship:
        from mne_mmnet.pretrained import _install_shipped_model

        _install_shipped_model(fname, opts.ship_as, keep_training_data=True)
        print(f"installed {opts.ship_as}")


if __name__ == "__main__":
    main()
