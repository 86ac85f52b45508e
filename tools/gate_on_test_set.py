"""What a gated model's start gate chooses on a saved test set.

    python tools/gate_on_test_set.py DIR -n 40 [--model broad]

For each epoch of DIR (written by ``mne-mmnet simulate``), computes the two
starts the gate weighs (the sparse subspace scan and the prior's output at
the sLORETA estimate, on the template with the average reference, as
:func:`mne_mmnet.apply_mmnet_inverse` does) and the gate's weight of the
sparse one, and prints how many epochs the gate sends to the sparse start,
the global LE (mm) of each start, of the gate's choice and of the better
start per epoch, and both starts on the epochs where the gate chose the
sparse one. A diagnosis tool.
"""

import argparse

import numpy as np
import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("-n", "--n-samples", type=int, default=None)
    parser.add_argument("--model", default="broad")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    from mne_mmnet.forward import read_template_forward
    from mne_mmnet.metrics import global_localization_error
    from mne_mmnet.pretrained import load_model
    from mne_mmnet.problem import referenced_problem
    from mne_mmnet.simulation import load_simulation
    from mne_mmnet.training.gate import gate_starts

    sim = load_simulation(opts.data)
    if opts.n_samples is not None:
        sim = sim.subset(range(min(opts.n_samples, len(sim))))
    net = load_model(opts.model, verbose=False)
    if net.gate is None:
        raise SystemExit(f"{opts.model} has no start gate (init={net.init!r}).")
    fwd = read_template_forward(verbose=False)
    y, L = (torch.as_tensor(a) for a in referenced_problem(sim.eeg, fwd["sol"]["data"]))
    y, L = (y / y.flatten(1).norm(dim=1)[:, None, None]).float(), L.float()
    sparse, prior_start, subspace = gate_starts(net.prior, y, L)
    with torch.no_grad():
        weight = net.gate(sparse, prior_start, y, L, subspace=subspace).numpy()

    def global_le(x):
        return global_localization_error(
            x.double().numpy(), sim.sources, seeds=sim.seeds,
            positions=fwd["source_rr"],
        )  # fmt: skip

    le_sparse, le_prior = global_le(sparse), global_le(prior_start)
    picks = weight > 0.5
    chosen = np.where(picks, le_sparse, le_prior)
    print(f"{opts.data}: {len(sim)} epochs; the gate of {opts.model} picks the "
          f"sparse start on {int(picks.sum())}")  # fmt: skip
    better = np.minimum(le_sparse, le_prior).mean()
    print(f"global LE (mm): sparse start {le_sparse.mean():.2f}, prior start "
          f"{le_prior.mean():.2f}, the gate's choice {chosen.mean():.2f}, the "
          f"better of the two {better:.2f}")  # fmt: skip
    if picks.any():
        sparse_le, prior_le = le_sparse[picks].mean(), le_prior[picks].mean()
        print(f"where it picks the sparse start: sparse {sparse_le:.2f}, "
              f"prior {prior_le:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
