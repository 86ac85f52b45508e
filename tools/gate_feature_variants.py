"""Refit the start gate on variants of its features: how version 2 was chosen.

    python tools/gate_feature_variants.py simulate W/variants_broad
    python tools/gate_feature_variants.py simulate W/variants_nmm --nmm-prob 0.25
    python tools/gate_feature_variants.py fit W/variants_broad/examples.pt \
        W/variants_nmm/examples.pt

``simulate`` makes the examples of ``tools/train_gate.py`` (same prior, seeds,
batches and workers: about 11 and 18 minutes on 2 cores) with one more
column, last: version 1's "fit of Phi(s), signal subspace, all times" (one
scale for all times). ``fit`` fits a gate on the union of the sets for each
variant (:func:`mne_mmnet.training.gate.fit_start_gate` with the options of
``tools/train_gate.py``; each variant's feature at the position version 1's
had) and prints the validation expected global LE and that of the hard
choice: version 1, each feature of version 2 alone, neither, both (version 2).
"""

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import train_gate  # noqa: E402

#: columns of each variant in the 31 of ``simulate`` (version 2's 30, then
#: version 1's feature); version 2 holds its two new features at 26 and 27
VARIANTS = {
    "version 1 (one scale for all times)": [*range(26), 30, 28, 29],
    "one scale per time only": [*range(27), 28, 29],
    "span of the fields only": [*range(26), 27, 28, 29],
    "neither": [*range(26), 28, 29],
    "both (version 2, shipped)": list(range(30)),
}


def _with_version_1(s, p, y, L, *, subspace=None):
    """Version 2's features and, last, version 1's fit of Phi(s)."""
    from mne_mmnet.networks import gate

    features = gate.start_features(s, p, y, L, subspace=subspace)
    y_sig = subspace[0].to(y.dtype)
    return torch.cat([features, gate._fit_space_time(p, L, y_sig)[:, None]], 1)


def _job(job):
    model_name, seed, first, count, ranges = job
    torch.set_num_threads(1)
    from mne_mmnet.training import gate

    net = train_gate._load_to_refit(model_name)
    with mock.patch.object(gate, "start_features", _with_version_1):
        return gate.gate_examples(
            net, seed=seed, n_batches=count, first_batch=first, ranges=ranges
        )


def _simulate(opts):
    from mne_mmnet.training.gate import GATE_BATCHES

    ranges = dict(GATE_BATCHES, nmm_prob=opts.nmm_prob)
    parts = {}
    for part, seed, n in (("train", opts.seed, opts.train_batches),
                          ("val", opts.seed + 1, opts.val_batches)):  # fmt: skip
        edges = np.linspace(0, n, opts.workers + 1).astype(int)
        jobs = [(opts.model, seed, int(a), int(b - a), ranges)
                for a, b in zip(edges, edges[1:])]  # fmt: skip
        with ProcessPoolExecutor(opts.workers) as pool:
            parts[part] = train_gate._joined(list(pool.map(_job, jobs)))
    keys = ("model", "train_batches", "val_batches", "seed", "nmm_prob")
    options = {k: getattr(opts, k) for k in keys}
    opts.out.mkdir(parents=True, exist_ok=True)
    torch.save(dict(**parts, options=options), opts.out / "examples.pt")
    print(f"wrote {opts.out / 'examples.pt'}")


def _fit(opts):
    from mne_mmnet.networks import gate
    from mne_mmnet.training.gate import _chosen_le, _expected_le, fit_start_gate

    saved = [torch.load(path, weights_only=False) for path in opts.examples]
    train = train_gate._joined([s["train"] for s in saved])
    val = train_gate._joined([s["val"] for s in saved])
    for name, columns in VARIANTS.items():
        sub_train, sub_val = (dict(e, features=e["features"][:, columns])
                              for e in (train, val))  # fmt: skip
        names = tuple(f"feature {k}" for k in columns)
        with mock.patch.object(gate, "FEATURE_NAMES", names):
            fitted, _ = fit_start_gate(sub_train, sub_val, seed=opts.seed,
                                       verbose=False)  # fmt: skip
        fitted = fitted.double()
        with torch.no_grad():
            expected = float(_expected_le(fitted, sub_val))
        chosen = _chosen_le(fitted, sub_val)
        print(f"{name:38s} validation expected LE {expected:.3f} mm, "
              f"hard choice {chosen:.3f} mm ({len(sub_val['le_linear'])} samples)",
              flush=True)  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sim = commands.add_parser("simulate")
    sim.add_argument("out", type=Path)
    sim.add_argument("--model", default="broad")
    sim.add_argument("--nmm-prob", type=float, default=0.0)
    sim.add_argument("--train-batches", type=int, default=1200)
    sim.add_argument("--val-batches", type=int, default=300)
    sim.add_argument("--seed", type=int, default=20261206)
    sim.add_argument("--workers", type=int, default=2)
    fit = commands.add_parser("fit")
    fit.add_argument("examples", type=Path, nargs="+")
    fit.add_argument("--seed", type=int, default=20261206)
    opts = parser.parse_args()
    _simulate(opts) if opts.command == "simulate" else _fit(opts)


if __name__ == "__main__":
    main()
