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
those of the stored (rounded) gate, beside those of the gate of ``--model``
(if it has one) on the same examples. ``--ship`` installs OUT/model.pt as
``broad`` (or ``--ship-as``; sha256 in the registry, model card rewritten,
its training-data record kept). Examples are kept in OUT/examples.pt, so
that a rerun with other fitting options (``--refit``) does not simulate
again (it takes the simulation options stored with them).
``--examples PATH`` (repeated) fits on the union of saved example sets
instead (training with training, validation with validation); they must
come from the same prior as ``--model`` and the current version of the
features. A gate of ``--model`` that reads another version of the features
(``mne_mmnet.networks.gate.FEATURES_VERSION``) cannot be loaded; it is
dropped and replaced, the prior and curvature kept. The shipped gate::

    python tools/train_gate.py --out W/gate_broad2
    python tools/train_gate.py --out W/gate_nmm2 --nmm-prob 0.25
    python tools/train_gate.py --out W/gate_v2 --examples \
        W/gate_broad2/examples.pt --examples W/gate_nmm2/examples.pt --ship
"""

import argparse
import copy
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch


def _load_to_refit(model):
    """Load ``model`` (name or path) to refit its gate.

    A gate that reads another version of the start features cannot be
    loaded (:class:`mne_mmnet.networks.StartGate`); it is dropped here
    (``init="prior"``, ``metadata["replaced_gate_features"]`` its version),
    the prior and curvature kept.
    """
    from mne_mmnet.architectures import build_model
    from mne_mmnet.networks.gate import FEATURES_VERSION
    from mne_mmnet.pretrained import (
        _MODEL_NAMES,
        _read_model_file,
        fetch_model,
        load_model,
    )

    named = model in _MODEL_NAMES and not Path(model).exists()
    content = _read_model_file(fetch_model(model) if named else Path(model), "")
    gate = content["config"].get("gate")
    if gate is None or gate["features"] == FEATURES_VERSION:
        return load_model(model, device="cpu", verbose=False)
    net = build_model(dict(content["config"], gate=None, init="prior"))
    state = content["state_dict"]
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("gate.")})
    net.metadata = dict(content.get("metadata", {}))
    net.metadata["replaced_gate_features"] = gate["features"]
    return net.eval()


def _examples(job):
    model_name, seed, first, count, ranges = job
    torch.set_num_threads(1)
    from mne_mmnet.training.gate import gate_examples

    net = _load_to_refit(model_name)
    return gate_examples(
        net, seed=seed, n_batches=count, first_batch=first, ranges=ranges
    )


def _simulate(model_name, seed, n_batches, workers, ranges):
    edges = np.linspace(0, n_batches, workers + 1).astype(int)
    jobs = [(model_name, seed, int(a), int(b - a), ranges)
            for a, b in zip(edges, edges[1:])]  # fmt: skip
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_examples, jobs))
    return _joined(parts)


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


def _joined(parts):
    """One example set from several (features and scores stacked in order)."""
    return dict(
        features=torch.cat([p["features"] for p in parts]),
        le_linear=np.concatenate([p["le_linear"] for p in parts]),
        le_prior=np.concatenate([p["le_prior"] for p in parts]),
    )


def _examples_of_run(opts, gate_batches):
    """Training and validation examples, and the record of where they came from.

    ``--examples``: the union of saved sets (training with training,
    validation with validation); ``--refit``: OUT/examples.pt with the options
    that simulated it; otherwise simulated now and saved there.
    """
    sim_args = ("model", "train_batches", "val_batches", "seed", "nmm_prob", "n_times")
    if opts.examples:
        saved = [torch.load(path, weights_only=False) for path in opts.examples]
        sources = [dict(path=str(path), **s["options"])
                   for path, s in zip(opts.examples, saved)]  # fmt: skip
        train = _joined([s["train"] for s in saved])
        val = _joined([s["val"] for s in saved])
        return train, val, dict(batch_size=16, example_sets=sources)
    cache = opts.out / "examples.pt"
    saved = torch.load(cache, weights_only=False) if opts.refit else None
    if saved is not None:  # the options that simulated the saved examples
        for key in sim_args:
            setattr(opts, key, saved["options"].get(key, _UNSET.get(key)))
    ranges = dict(gate_batches, nmm_prob=opts.nmm_prob)
    if opts.n_times is not None:
        ranges["n_times"] = tuple(opts.n_times)
    batches = dict(ranges, batch_size=16, seeds=[opts.seed, opts.seed + 1])
    if saved is not None:
        return saved["train"], saved["val"], batches
    train = _simulate(opts.model, opts.seed, opts.train_batches, opts.workers,
                      ranges)  # fmt: skip
    val = _simulate(opts.model, opts.seed + 1, opts.val_batches, opts.workers,
                    ranges)  # fmt: skip
    options = {key: getattr(opts, key) for key in sim_args}
    torch.save(dict(train=train, val=val, options=options), cache)
    return train, val, batches


#: simulation options of example sets saved before the option existed
_UNSET = dict(nmm_prob=0.0, n_times=None)


def _value(v):
    return " ".join(str(x) for x in v) if isinstance(v, list | tuple) else v


def _command(opts):
    """The command line that fits this gate again (simulation options only if used)."""
    skip = {"out", "refit", "ship", "ship_as", "workers", "examples"}
    if opts.examples:
        skip |= {"train_batches", "val_batches", "nmm_prob", "n_times"}
    args = [f"--{k.replace('_', '-')} {_value(v)}" for k, v in vars(opts).items()
            if k not in skip and v is not None]  # fmt: skip
    args += [f"--examples {path}" for path in opts.examples]
    return "python tools/train_gate.py " + " ".join(args)


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
    parser.add_argument(
        "--n-times", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
        help="window lengths of the batches (default: those of GATE_BATCHES)",
    )  # fmt: skip
    parser.add_argument("--refit", action="store_true", help="reuse OUT/examples.pt")
    parser.add_argument(
        "--examples", action="append", type=Path, default=[], metavar="PATH",
        help="fit on the union of these saved example sets (OUT/examples.pt of "
        "earlier runs with the same prior) instead of simulating",
    )  # fmt: skip
    parser.add_argument("--ship", action="store_true")
    parser.add_argument("--ship-as", default="broad", help="shipped name (--ship)")
    opts = parser.parse_args()
    from mne_mmnet.pretrained import save_model
    from mne_mmnet.training.gate import GATE_BATCHES, fit_start_gate

    opts.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    train, val, batches = _examples_of_run(opts, GATE_BATCHES)
    minutes = (time.time() - start) / 60
    print(f"examples: {len(train['le_linear'])} train, {len(val['le_linear'])} "
          f"validation ({minutes:.1f} min)", flush=True)  # fmt: skip
    hidden = tuple(int(h) for h in opts.hidden.split(","))
    gate, history = fit_start_gate(
        train, val, hidden=hidden, seed=opts.seed, epochs=opts.epochs,
        weight_decay=opts.weight_decay,
    )  # fmt: skip
    gate = gate.half().float()  # as stored
    net = _load_to_refit(opts.model)
    # the gate it replaces, on the same validation examples (if it had one
    # that reads these features)
    replaced = None if net.gate is None else _summary(net.gate, val)
    old_features = net.metadata.pop("replaced_gate_features", None)
    if old_features is not None:
        print(f"the replaced gate read version {old_features} of the features: "
              "not scored on these examples")  # fmt: skip
    net.gate, net.init = gate, "gated"
    record = dict(
        command=_command(opts),
        batches=batches,
        history=history,
        train=_summary(gate, train),
        validation=_summary(gate, val),
        validation_of_replaced_gate=replaced,
        replaced_gate_features=old_features,
    )
    meta = dict(getattr(net, "metadata", {}), start_gate=record)
    fname = save_model(net, opts.out / "model.pt", metadata=meta, overwrite=True,
                       weights_dtype="float16", verbose=False)  # fmt: skip
    shown = ("validation", "validation_of_replaced_gate")
    print(json.dumps({k: record[k] for k in shown}, indent=1))
    print(f"wrote {fname}")
    if opts.ship:
        from mne_mmnet.pretrained import _install_shipped_model

        _install_shipped_model(fname, opts.ship_as, keep_training_data=True)
        print(f"installed {opts.ship_as}")


if __name__ == "__main__":
    main()
