"""MM-Net on other EEG caps: BioSemi-64 and EGI HydroCel-128 on the template head.

Builds each cap's forward with :func:`mne_mmnet.make_cap_forward` (cached
under MNE_DATA), simulates broad data through that forward and compares the
mean global localisation error of the default MM-Net with sLORETA's (both
average-referenced, the template's 90-channel montage as a reference row).
Prints the table and writes benchmarks/results/caps.md:

    python benchmarks/bench_caps.py [--n 100] [--seed 0] [--ico 4]
"""

import argparse
from pathlib import Path

import mne
import numpy as np
import torch

import mne_mmnet
from mne_mmnet.metrics import global_localization_error
from mne_mmnet.problem import referenced_problem
from mne_mmnet.simulation import simulate_broad
from mne_mmnet.solver import initial_estimate

OUT = Path(__file__).parent / "results" / "caps.md"
#: BioSemi's own channel names, in the order of MNE's biosemi64 montage
BIOSEMI_NAMES = [f"{bank}{k}" for bank in "AB" for k in range(1, 33)]


def _caps():
    """(label, info) of each cap: the names a recording of it carries."""
    biosemi = mne.channels.make_standard_montage("biosemi64")
    biosemi.rename_channels(dict(zip(biosemi.ch_names, BIOSEMI_NAMES)))
    egi = mne.channels.make_standard_montage("GSN-HydroCel-128")
    for label, montage, sfreq in (
        ("BioSemi-64 (A1..B32)", biosemi, 512.0),
        ("EGI HydroCel-128 (E1..E128)", egi, 500.0),
    ):
        info = mne.create_info(montage.ch_names, sfreq, "eeg")
        yield label, info.set_montage(montage)


def _scores(info, fwd, n, seed):
    """Mean global LE (mm) of the default MM-Net and of sLORETA."""
    gain = fwd["sol"]["data"]
    sim = simulate_broad(n, seed=seed, leadfield=gain, sfreq=info["sfreq"],
                         verbose=False)  # fmt: skip
    epochs = mne.EpochsArray(sim.eeg.astype(float), info, verbose=False)
    epochs.set_eeg_reference(projection=True, verbose=False)
    stcs = mne_mmnet.apply_mmnet_inverse_epochs(epochs, fwd, verbose=False)
    y, L = referenced_problem(sim.eeg, gain)
    sloreta = initial_estimate(torch.as_tensor(y), torch.as_tensor(L), init="sloreta")
    rr = mne_mmnet.read_template_forward(verbose=False)["source_rr"]
    return [
        float(np.mean(global_localization_error(
            x, sim.sources, seeds=sim.seeds, positions=rr)))
        for x in (np.stack([s.data for s in stcs]), sloreta.numpy())
    ]  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ico", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    template = mne.create_info(list(mne_mmnet.TEMPLATE_CH_NAMES), 512.0, "eeg")
    template.set_montage(mne.channels.make_standard_montage("colin27_1020"))
    for label, info in [("template 10-20 (shipped forward)", template), *_caps()]:
        if info is template:
            fwd = mne_mmnet.read_template_forward(verbose=False)
        else:
            fwd = mne_mmnet.make_cap_forward(info, ico=args.ico, verbose=False)
        le_mmnet, le_sloreta = _scores(info, fwd, args.n, args.seed)
        rows.append(
            f"| {label} | {len(info['ch_names'])} | {le_mmnet:.1f} | "
            f"{le_sloreta:.1f} | {le_mmnet / le_sloreta:.2f} |"
        )
    text = "\n".join(
        [
            "# MM-Net on other EEG caps (forward from make_cap_forward)",
            "",
            f"{args.n} broad simulations (seed {args.seed}) through each cap's own "
            f"forward (ico-{args.ico} BEM), average reference; mean global "
            "localisation error (mm) of the default model and of sLORETA "
            "(lambda2 = 1/9).",
            "",
            "| cap | channels | MM-Net (broad) | sLORETA | ratio |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
            f"Command: `python benchmarks/bench_caps.py --n {args.n} --seed "
            f"{args.seed} --ico {args.ico}`",
            "",
        ]
    )
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
