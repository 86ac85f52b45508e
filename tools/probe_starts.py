"""The two starts of the default model and the gate's choice, per sample.

    python tools/probe_starts.py 100

On N samples of each probe set of ``tools/probe_models.py`` (one
single-region source: broad simulator, seed 5, 5 dB, T = 64 at 512 Hz; 1-3
MNE-Python dipoles, seed 123; the generalisation scenarios ``paper`` and
``three-patches``, seed 77), prints the mean global LE (mm) of the sLORETA
estimate, of the sparse subspace-scan estimate, of the prior's output at the
sLORETA estimate, of the shipped gate's choice between the last two
(``g > 1/2``) and of a perfect choice between them, and how often the scan's
and the prior's peaks are exactly at the seed (LE = 0). Starts only: no MM
iteration.
"""

import argparse

import numpy as np
import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int)
    parser.add_argument("--model", default="broad")
    opts = parser.parse_args()
    from probe_models import probe_sets  # this folder (run as a script)

    from mne_mmnet.forward import read_template_forward
    from mne_mmnet.networks import start_features
    from mne_mmnet.pretrained import load_model
    from mne_mmnet.problem import average_reference
    from mne_mmnet.solver import normalize_sources
    from mne_mmnet.solver.linear import linear_inverse_kernel
    from mne_mmnet.solver.subspace import subspace_scan
    from mne_mmnet.training.broad import _scores

    net = load_model(opts.model, verbose=False).eval()
    sets = probe_sets(opts.n)
    gain = read_template_forward(verbose=False)["sol"]["data"]
    L = average_reference(torch.as_tensor(gain), 0)
    kernel = linear_inverse_kernel(L, method="sloreta")
    print("set            sLORETA  scan  prior  gate  perfect | exact: scan prior")
    for label, sim in sets.items():
        y = average_reference(torch.as_tensor(sim.eeg, dtype=torch.float64), 1)
        with torch.no_grad():
            x_s = normalize_sources(kernel @ y).float()
            p = net.prior(x_s)
            s = normalize_sources(subspace_scan(y, L)).float()
            pick = net.gate.logit(start_features(s, p, y.float(), L.float())) > 0
        le_lin = _scores(x_s, sim)[0]
        le_s, le_p = _scores(s, sim)[0], _scores(p, sim)[0]
        gate = np.where(pick.numpy(), le_s, le_p).mean()
        perfect = np.minimum(le_s, le_p).mean()
        print(f"{label:14s} {le_lin.mean():7.2f} {le_s.mean():5.2f} "
              f"{le_p.mean():6.2f} {gate:5.2f} "
              f"{perfect:8.2f} | {100 * (le_s == 0).mean():5.0f}% "
              f"{100 * (le_p == 0).mean():5.0f}%", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
