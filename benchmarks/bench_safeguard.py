"""How often the descent safeguard fires, with and without the projection.

Runs the shipped models for 10 MM iterations on held-out simulated samples
(the benchmark's test seed) and writes benchmarks/results/safeguard.md: the
safeguard firing rate, the fraction of learned-curvature entries clipped at
the bound, and the largest energy change between iterations (<= 0).

    python benchmarks/bench_safeguard.py
"""

from pathlib import Path

import mne
import numpy as np

import mne_mmnet

OUT = Path(__file__).parent / "results" / "safeguard.md"
TEST_SEED = 20240917  # the benchmark's held-out test seed


def main():
    mne.set_log_level("ERROR")
    fwd = mne_mmnet.read_template_forward()
    gain = fwd["sol"]["data"] - fwd["sol"]["data"].mean(axis=0)
    sets = {
        "sereega (32 samples)": mne_mmnet.simulate_sereega(
            32, seed=TEST_SEED, snr_db=5.0, fwd=fwd
        ),
        "nmm (8 samples)": mne_mmnet.simulate_nmm(
            8, seed=TEST_SEED, snr_db=5.0, fwd=fwd
        ),
    }
    lines = [
        "# Descent safeguard and projection (10 MM iterations, 5 dB)",
        "",
        "| data | model | projection | safeguard fired | clipped at nu_up "
        "| max energy change |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for data_name, sim in sets.items():
        y = sim.eeg - sim.eeg.mean(axis=1, keepdims=True)
        for name in ("sereega", "nmm"):
            net = mne_mmnet.load_model(name, device="cpu")
            for bound in (net.bound, None):
                _, trace = mne_mmnet.solve_mm(
                    y, gain, model=net, n_iter=10, bound=bound, step=net.step,
                    init=net.init, gamma=net.gamma, seed=0, return_trace=True,
                )  # fmt: skip
                lines.append(
                    f"| {data_name} | {name} | {'on' if bound else 'off'} "
                    f"| {100 * trace.safeguard_rate:.1f}% "
                    f"| {100 * trace.clip_upper.mean():.1f}% "
                    f"| {np.diff(trace.total, axis=0).max():.1e} |"
                )
    text = "\n".join(lines) + "\n"
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
