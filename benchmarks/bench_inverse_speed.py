"""Time apply_mmnet_inverse against MNE's inverse solvers on the same Evoked.

Prints and writes benchmarks/results/inverse_speed.md: seconds per evoked for
T = 64 and T = 500 with MM-Net, ``mne.minimum_norm.apply_inverse`` (prepared
operator) and ``mne.inverse_sparse.gamma_map``, and their ratios, measured in
one run on the CPU.
"""

import platform
import sys
import time
from pathlib import Path

import mne
import torch
from mne.minimum_norm import (
    apply_inverse,
    make_inverse_operator,
    prepare_inverse_operator,
)

import mne_mmnet

OUT = Path(__file__).parent / "results" / "inverse_speed.md"


def _best_of(func, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times)


def _time_one(fwd, net, n_times, sfreq, repeat):
    sim = mne_mmnet.simulate_sereega(
        1, seed=1, snr_db=5.0, fwd=fwd, n_times=n_times, sfreq=sfreq
    )
    info = mne.create_info(fwd.ch_names, sfreq, "eeg")
    evoked = mne.EvokedArray(sim.eeg[0].astype(float), info)
    evoked.set_montage("colin27_1020")
    evoked.set_eeg_reference("average", projection=True)
    cov = mne.make_ad_hoc_cov(evoked.info)
    inv = make_inverse_operator(evoked.info, fwd, cov, fixed=True, depth=None)
    inv = prepare_inverse_operator(inv, nave=1, lambda2=1 / 9, method="sLORETA")
    mne_mmnet.apply_mmnet_inverse(evoked, fwd, model=net)  # warm up (norm cache)
    t_mm = _best_of(
        lambda: mne_mmnet.apply_mmnet_inverse(evoked, fwd, model=net), repeat
    )
    t_inv = _best_of(
        lambda: apply_inverse(evoked, inv, 1 / 9, "sLORETA", prepared=True), repeat
    )
    t_gm = _best_of(
        lambda: mne.inverse_sparse.gamma_map(
            evoked, fwd, cov, alpha=0.2, loose=0.0, depth=None
        ),
        1,
    )
    return n_times, t_mm, t_inv, t_gm


def main(model="sereega", repeat=3):
    mne.set_log_level("ERROR")
    fwd = mne_mmnet.read_template_forward()
    net = mne_mmnet.load_model(model, device="cpu")
    rows = [
        _time_one(fwd, net, n_times, sfreq, repeat)
        for n_times, sfreq in ((64, 512.0), (500, 500.0))
    ]
    lines = [
        "# apply_mmnet_inverse speed (CPU)",
        "",
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {sys.version.split()[0]}; "
        f"model {model!r}; best of {repeat} (gamma_map: 1 run); one Evoked, "
        "90 channels.",
        "",
        "| T | MM-Net (s) | sLORETA, prepared (s) | gamma_map (s) "
        "| MM-Net / sLORETA | MM-Net / gamma_map |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n_times, t_mm, t_inv, t_gm in rows:
        lines.append(
            f"| {n_times} | {t_mm:.3f} | {t_inv:.4f} | {t_gm:.3f} | "
            f"{t_mm / t_inv:.0f}x | {t_mm / t_gm:.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
