"""Probe candidate default models on four small fixed test sets.

    python tools/probe_models.py 40 shipped=broad run=pretrained_work/ablA

Each ``NAME=WHERE`` is a shipped model's name (run as shipped), or a model
file or a training run folder (``tools/train_default.py --out``, its latest
``checkpoint.pt``) whose prior weights replace those of the shipped
``broad`` (curvature, start gate and solver settings unchanged: the gate
was fitted to the shipped prior, refit it with ``tools/train_gate.py
--model FILE`` for a fair comparison). Prints sLORETA's and
each candidate's global LE (mm) / AUC on N samples of: one single-region
source (broad simulator, seed 5, 5 dB, T = 64 at 512 Hz), 1-3 MNE-Python
dipoles (seed 123), and the generalisation scenarios ``paper`` and
``three-patches`` (seed 77, not the benchmark's test seed). Quick, paired
comparisons during training; the benchmark (``mne-mmnet benchmark --suite
generalisation``) decides.
"""

import argparse
import tempfile
from pathlib import Path

import torch


def _candidate(where, tmp):
    from mne_mmnet.pretrained import load_model, save_model

    path = Path(where)
    if path.is_dir():
        ckpt = torch.load(path / "checkpoint.pt", map_location="cpu", weights_only=True)
        prior = {
            k.removeprefix("prior."): v.float()
            for k, v in ckpt["model"].items()
            if k.startswith("prior.")
        }
    elif path.is_file():
        prior = load_model(path).prior.state_dict()
    else:
        return where  # a shipped model's name
    net = load_model("broad")
    net.prior.load_state_dict(prior)
    return str(save_model(net, Path(tmp) / f"{path.stem}.pt", verbose=False))


def probe_sets(n):
    """The four probe sets (name -> Simulation), N samples each."""
    from mne_mmnet.bench.generalisation import simulate_scenario
    from mne_mmnet.simulation import simulate_broad, simulate_mne_dipoles

    sets = dict(
        focal=simulate_broad(
            n, seed=5, orders=(0, 0), n_patches=1, snr_db=5.0, sfreq=512.0,
            n_times=64, spike_banks=(100,), verbose=False,
        ),
        dipoles=simulate_mne_dipoles(n, seed=123, verbose=False),
    )  # fmt: skip
    for name in ("paper", "three-patches"):
        sets[name] = simulate_scenario(name, n, seed=77)[0]
    return sets


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int)
    parser.add_argument("models", nargs="+", help="NAME=model, file or run folder")
    parser.add_argument("--threads", type=int, default=2)
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    from mne_mmnet.bench.methods import _mmnet_factory, register_method
    from mne_mmnet.bench.run import run_benchmark
    from mne_mmnet.forward import read_template_adjacency, read_template_forward

    fwd, adjacency = read_template_forward(verbose=False), read_template_adjacency()
    sets = probe_sets(opts.n)
    methods = ["sLORETA"]
    with tempfile.TemporaryDirectory() as tmp:
        for spec in opts.models:
            name, _, where = spec.partition("=")
            register_method(
                name, _mmnet_factory, model=_candidate(where, tmp), overwrite=True
            )
            methods.append(name)
        for label, sim in sets.items():
            res = run_benchmark(
                sim, fwd, adjacency, methods=methods, batch_size=opts.n,
                progress=False, verbose=False,
            )  # fmt: skip
            cells = []
            for m in methods:
                metrics = res["methods"][m]["metrics"]
                le, area = metrics["global_localization_error"], metrics["auc"]
                cells.append(f"{m}: {le:.2f} / {area:.3f}")
            print(f"{label:14s}", " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
