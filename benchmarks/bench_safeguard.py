"""How often the energy would rise, with and without the MM guardrails.

Runs the shipped models for 10 iterations on held-out simulated samples (the
benchmark's test seed) and writes benchmarks/results/safeguard.md:

* MM-Net (projection on, as shipped): how often the descent safeguard fired
  (a step that would raise the energy, rejected), the fraction of learned
  curvature entries clipped at the bound, the largest energy change between
  iterations (<= 0);
* the same weights run with the projection off (safeguard still on);
* R-MM-Net (``<name>-unprojected``: trained and run with neither projection
  nor safeguard): how often a step raised the energy;
* with ``--baselines-dir DIR``, the learned gradient solvers saved there
  (4DVarNet, Meta-Curvature, ModGrad minimise the same energy, unguarded).

    python benchmarks/bench_safeguard.py [--baselines-dir pretrained_work/baselines]
        [--n-sereega 100] [--n-nmm 16]
"""

import argparse
from pathlib import Path

import mne
import numpy as np
import torch

import mne_mmnet
from mne_mmnet.bench.methods import _baseline_files
from mne_mmnet.pretrained import shipped_models

OUT = Path(__file__).parent / "results" / "safeguard.md"
TEST_SEED = 20240917  # the benchmark's held-out test seed


def _mmnet_rows(data_name, y, gain, name, rows):
    net = mne_mmnet.load_model(name, device="cpu")
    variants = [(net.bound, "on")]
    if net.bound is not None:
        variants.append((None, "off (inference only)"))
    for bound, label in variants:
        _, trace = mne_mmnet.solve_mm(
            y, gain, model=net, n_iter=10, bound=bound, step=net.step,
            init=net.init, gamma=net.gamma, seed=0, return_trace=True,
        )  # fmt: skip
        kind = "R-MM-Net" if name.endswith("-unprojected") else "MM-Net"
        guard = "yes" if net.safeguard else "no"
        rows.append(
            f"| {data_name} | {kind} ({name.removesuffix('-unprojected')}) "
            f"| {label if kind == 'MM-Net' else 'off (trained)'} | {guard} "
            f"| {100 * trace.safeguard_rate:.1f}% "
            f"| {100 * trace.clip_upper.mean():.1f}% "
            f"| {np.diff(trace.total, axis=0).max():.1e} |"
        )


def _baseline_rows(data_name, y, gain, fname, row_name, rows):
    net = mne_mmnet.load_model(fname, device="cpu")
    if net.fixed_n_times not in (None, y.shape[-1]):
        return
    L = torch.as_tensor(gain, dtype=torch.float32)
    with torch.no_grad():
        _, trace = net(torch.as_tensor(y, dtype=torch.float32), L, return_trace=True)
    if "total" not in trace:  # the embedding solvers minimise another energy
        return
    total = trace["total"].numpy()
    rises = np.diff(total, axis=0)
    rows.append(
        f"| {data_name} | {row_name} | none | no "
        f"| {100 * (rises > 0).mean():.1f}% | – | {rises.max():.1e} |"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baselines-dir", type=Path, default=None)
    parser.add_argument("--n-sereega", type=int, default=100)
    parser.add_argument("--n-nmm", type=int, default=16)
    args = parser.parse_args(argv)
    mne.set_log_level("ERROR")
    fwd = mne_mmnet.read_template_forward()
    gain = fwd["sol"]["data"] - fwd["sol"]["data"].mean(axis=0)
    sets = {
        f"sereega ({args.n_sereega} samples)": mne_mmnet.simulate_sereega(
            args.n_sereega, seed=TEST_SEED, snr_db=5.0, fwd=fwd
        ),
        f"nmm ({args.n_nmm} samples)": mne_mmnet.simulate_nmm(
            args.n_nmm, seed=TEST_SEED, snr_db=5.0, fwd=fwd
        ),
    }
    rows = [
        "# Energy rises with and without the MM guardrails (10 iterations, 5 dB)",
        "",
        "'Energy rose' counts (iteration, sample) steps that would increase the "
        "lower-level energy: rejected where the safeguard is on, taken where it "
        "is off.",
        "",
        "| data | model | projection | safeguard | energy rose | clipped at bound "
        "| max energy change |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    baselines = []
    if args.baselines_dir is not None:
        baselines = _baseline_files(args.baselines_dir)
    for data_name, sim in sets.items():
        y = sim.eeg - sim.eeg.mean(axis=1, keepdims=True)
        for name in shipped_models():
            _mmnet_rows(data_name, y, gain, name, rows)
        for fname, label, domain in baselines:
            _baseline_rows(data_name, y, gain, fname, f"{label} ({domain})", rows)
    text = "\n".join(rows) + "\n"
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
