"""Compare MM-Net variants on a saved test set, paired (the same samples).

    python tools/compare_on_test_set.py DIR -n 100 broad broad:init=prior \
        broad:guarantee=checked old=previous_broad.pt

Each spec is ``[LABEL=]MODEL[:ATTR=VALUE,...]``: a shipped model's name or a
model file, with solver settings overridden on a copy (``init``,
``guarantee``, ``n_iter``, ``step``, ...; numbers are read as numbers).
DIR is a test set written by ``mne-mmnet simulate`` (e.g. Table I's NMM
set) or ``scenario:NAME``, a scenario of the generalisation benchmark
simulated with ``--seed`` (default 77, not the benchmark's test seed).
Scores every variant with the benchmark's metrics
(:func:`mne_mmnet.bench.run_benchmark`; ``--crop START STOP`` keeps a
window of every epoch) and prints, per variant, mean LE (mm, order-5
neighbourhood of the seed), global LE (mm), AUC (%) and the paired
difference in LE to the first variant with its standard error. A diagnosis
tool: the benchmark tables come from ``mne-mmnet benchmark``.
"""

import argparse
import copy

import numpy as np
import torch


def _parse(spec):
    label, rest = spec, spec
    if "=" in spec.split(":", 1)[0]:  # LABEL=MODEL...
        label, rest = spec.split("=", 1)
    model, _, options = rest.partition(":")
    settings = {}
    for item in filter(None, options.split(",")):
        key, _, value = item.partition("=")
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                pass
        settings[key] = value
    return label, model, settings


def _factory(fwd, *, model, settings):
    from mne_mmnet.bench.methods import _mmnet_factory
    from mne_mmnet.inverse._operator import _resolve_model

    net = copy.deepcopy(_resolve_model(model, torch.device("cpu")))
    for key, value in settings.items():
        if not hasattr(net, key):
            raise ValueError(f"{model} has no setting {key!r}")
        setattr(net, key, value)
    return _mmnet_factory(fwd, model=net)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("specs", nargs="+")
    parser.add_argument("-n", "--n-samples", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--seed", type=int, default=77,
        help="seed of a scenario:NAME set (not the benchmark's test seed)",
    )  # fmt: skip
    parser.add_argument(
        "--crop", type=int, nargs=2, metavar=("START", "STOP"),
        help="keep samples START:STOP of every epoch (data and sources)",
    )  # fmt: skip
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    from mne_mmnet.bench import register_method, run_benchmark
    from mne_mmnet.forward import read_template_adjacency, read_template_forward
    from mne_mmnet.simulation import load_simulation

    if opts.data.startswith("scenario:"):
        from mne_mmnet.bench.generalisation import simulate_scenario

        name = opts.data.removeprefix("scenario:")
        sim = simulate_scenario(name, opts.n_samples or 200, seed=opts.seed)[0]
    else:
        sim = load_simulation(opts.data)
    if opts.n_samples is not None:
        sim = sim.subset(range(min(opts.n_samples, len(sim))))
    if opts.crop is not None:
        window = slice(*opts.crop)
        sim.eeg, sim.sources = sim.eeg[..., window], sim.sources[..., window]
    names = []
    for spec in opts.specs:
        label, model, settings = _parse(spec)
        register_method(label, _factory, overwrite=True, model=model, settings=settings)
        names.append(label)
    results = run_benchmark(
        sim, read_template_forward(verbose=False), read_template_adjacency(),
        methods=names, batch_size=opts.batch_size, progress=False, verbose=False,
    )  # fmt: skip
    first = results["methods"][names[0]]["scores"]["localization_error"]
    print(f"{opts.data}: {len(sim)} samples of {sim.eeg.shape[-1]} time points")
    for name in names:
        entry = results["methods"][name]
        le = entry["scores"]["localization_error"]
        global_le = np.nanmean(entry["scores"]["global_localization_error"])
        diff = le - first
        se = np.nanstd(diff, ddof=1) / np.sqrt(np.sum(~np.isnan(diff)))
        print(
            f"{name:40s} LE {np.nanmean(le):6.2f} mm  global LE {global_le:6.2f} "
            f"mm  AUC {100 * entry['metrics']['auc']:6.2f}%  LE vs first "
            f"{np.nanmean(diff):+.2f} +- {se:.2f} mm  "
            f"({entry['runtime_per_sample_s']:.2f} s/sample)"
        )


if __name__ == "__main__":
    main()
