"""Both step guarantees of one model on a few simulated samples, side by side.

    python tools/probe_guarantee.py --model broad --data broad --n 16
    python tools/probe_guarantee.py --model sereega --data sereega --n 16

Prints, for ``guarantee="checked"`` and ``"certified"``: the time, the step
labels (certified / checked / rejected), the median energy decrease over the
iterations, the median step length ``|D| / |x|`` of the steps taken and the
global LE (mm) of the estimates (float32, template forward, average
reference). A quick probe; ``benchmarks/bench_safeguard.py`` is the full
table.
"""

import argparse
import time

import numpy as np
import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="broad")
    parser.add_argument("--data", choices=("broad", "sereega"), default="broad")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--threads", type=int, default=2)
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    from mne_mmnet.forward import read_template_forward
    from mne_mmnet.metrics import global_localization_error
    from mne_mmnet.pretrained import load_model
    from mne_mmnet.problem import referenced_problem
    from mne_mmnet.simulation import simulate_broad, simulate_sereega
    from mne_mmnet.solver import solve_mm

    fwd = read_template_forward(verbose=False)
    if opts.data == "broad":
        sim = simulate_broad(opts.n, seed=opts.seed, verbose=False)
    else:
        sim = simulate_sereega(opts.n, seed=opts.seed, snr_db=5.0, fwd=fwd,
                               verbose=False)  # fmt: skip
    y, gain = referenced_problem(sim.eeg, fwd["sol"]["data"])
    model = load_model(opts.model, verbose=False)
    for guarantee in ("checked", "certified"):
        t0 = time.perf_counter()
        x, trace = solve_mm(y, gain, model=model, guarantee=guarantee,
                            return_trace=True, verbose=False)  # fmt: skip
        seconds = time.perf_counter() - t0
        le = global_localization_error(np.asarray(x), sim.sources, seeds=sim.seeds,
                                       positions=fwd["source_rr"])  # fmt: skip
        labels = {k: f"{100 * v:.1f}%" for k, v in trace.step_labels.items()}
        taken = trace.step_ratio[trace.step_ratio > 0]
        print(
            f"{opts.model} on {opts.n} {opts.data} samples, {guarantee}: "
            f"{seconds:.1f} s, steps {labels}, median energy decrease "
            f"{np.median(trace.total[0] - trace.total[-1]):.2e}, median step "
            f"{np.median(taken) if taken.size else 0:.1e} of |x|, global LE "
            f"{np.mean(le):.2f} mm"
        )


if __name__ == "__main__":
    main()
