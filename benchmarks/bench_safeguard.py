"""Why each step is safe: certified, checked or rejected, with and without guardrails.

Runs the shipped models (each with its own number of iterations: 3 for
``broad``, 10 for the replicas) on held-out simulated samples (the
benchmark's test seed) and writes benchmarks/results/safeguard.md:

* every step labelled *certified* (a quadratic majorant valid on its whole
  segment proves descent), *checked* (accepted because its energy was
  evaluated and did not rise) or *rejected* (it would raise the energy);
* MM-Net as shipped (``broad``: ``guarantee="certified"``, the replicas:
  ``"checked"``) and with
  the other guarantee (``"certified"``: each step cut to the lowest
  majorant's minimiser; ``"checked"``), with LE, AUC, the median length of
  the steps taken and the share of a certified step's decrease that its
  majorant guarantees, so the cost of certification is measured;
* the ratio of the analytic (Proposition 1) bound to the largest curvature
  of the energy on the template at the sLORETA start (power iteration on
  Hessian-vector products, 60 iterations);
* the same weights run with the projection off (safeguard still on);
* R-MM-Net (``<name>-unprojected``: trained and run with neither projection
  nor safeguard): how often a step raised the energy;
* with ``--baselines-dir DIR``, the learned gradient solvers saved there
  (4DVarNet, Meta-Curvature, ModGrad minimise the same energy, unguarded).

    python benchmarks/bench_safeguard.py [--baselines-dir pretrained_work/baselines]
        [--n-sereega 100] [--n-nmm 16] [--models broad]

``--models``: measure only these shipped models and keep the other rows of
the existing results file (after re-shipping one model).
"""

import argparse
import sys
from pathlib import Path

import mne
import numpy as np
import torch

import mne_mmnet
from mne_mmnet.bench.methods import _baseline_files
from mne_mmnet.pretrained import shipped_models
from mne_mmnet.problem import average_reference

OUT = Path(__file__).parent / "results" / "safeguard.md"
TEST_SEED = 20240917  # the benchmark's held-out test seed


def _scores(x, sim, fwd, adjacency):
    from mne_mmnet.metrics import auc, global_localization_error

    le = global_localization_error(x, sim.sources, seeds=sim.seeds,
                                   positions=fwd["source_rr"])  # fmt: skip
    area = auc(x, sim.sources, seeds=sim.seeds, active=sim.patch_masks)
    return float(np.mean(le)), 100 * float(np.nanmean(area))


def _mmnet_rows(data_name, y, gain, name, rows, sim, fwd, adjacency):
    net = mne_mmnet.load_model(name, device="cpu")
    variants = [(dict(), f"as shipped ({net.guarantee})")]
    if net.bound is not None:
        other = "checked" if net.guarantee == "certified" else "certified"
        variants.append((dict(guarantee=other), other))
        variants.append((dict(bound=None), "projection off (inference only)"))
    for options, label in variants:
        x, trace = mne_mmnet.solve_mm(
            y, gain, model=net, seed=0, return_trace=True, **options
        )
        kind = "R-MM-Net" if name.endswith("-unprojected") else "MM-Net"
        guard = "yes" if net.safeguard else "no"
        lab = trace.step_labels
        le, area = _scores(x, sim, fwd, adjacency)
        taken = trace.step_ratio[trace.step_ratio > 0]
        size = f"{np.median(taken):.1e}" if taken.size else "–"
        share = _guaranteed_share(trace)
        model = f"{kind} ({name.removesuffix('-unprojected')})"
        line = (
            f"| {data_name} | {model} "
            f"| {label} | {trace.total.shape[0] - 1} | {guard} "
            f"| {100 * lab['certified']:.1f}% "
            f"| {100 * lab['checked']:.1f}% | {100 * lab['rejected']:.1f}% "
            f"| {100 * trace.clip_upper.mean():.1f}% "
            f"| {size} | {share} | {np.diff(trace.total, axis=0).max():.1e} "
            f"| {le:.2f} | {area:.2f} |"
        )
        rows.append(((data_name, model), line))


def _guaranteed_share(trace):
    """Median of (decrease the majorant guarantees) / (actual decrease).

    Over the certified steps: how tight the segment majorant is (1: exact).
    """
    drop = trace.total[:-1] - trace.total[1:]
    guaranteed = trace.decrease_rate - 0.5 * trace.majorant_curvature
    keep = trace.certified & (drop > 0)
    if not keep.any():
        return "–"
    return f"{np.median(guaranteed[keep] / drop[keep]):.2f}"


def _bound_ratio(y, gain, name, n=8):
    """Analytic bound / power-iteration curvature at the sLORETA start."""
    from mne_mmnet.solver import (
        curvature_bound,
        hvp_curvature_bound,
        initial_estimate,
        normalize_sources,
    )

    net = mne_mmnet.load_model(name, device="cpu").double()
    y_t = torch.as_tensor(y[:n], dtype=torch.float64)
    L = torch.as_tensor(gain, dtype=torch.float64)
    x = normalize_sources(initial_estimate(y_t, L, init="sloreta"))
    full = curvature_bound(x, y_t, L, prior=net.prior, lam=net.lam)
    data = curvature_bound(x, y_t, L, prior=None)
    est = hvp_curvature_bound(x, y_t, L, prior=net.prior, lam=net.lam,
                              n_power_iter=60, seed=0)  # fmt: skip
    est_data = hvp_curvature_bound(x, y_t, L, prior=None, n_power_iter=60, seed=0)
    total = (full.mu_data + net.lam * full.mu_prior) / est.lambda_max
    return (
        float(total.median()),
        float(total.min()),
        float(total.max()),
        float((data.mu_data / est_data.lambda_max).median()),
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
    line = (
        f"| {data_name} | {row_name} | none | {len(total) - 1} | no | 0.0% "
        f"| {100 * (rises <= 0).mean():.1f}% (unchecked) "
        f"| {100 * (rises > 0).mean():.1f}% (taken) | – | – | – | {rises.max():.1e} "
        "| – | – |"
    )
    rows.append(((data_name, row_name), line))


def _previous_tables(text):
    """The two tables of an earlier results file: lists of ``((data, model), row)``."""
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("| ---"):
            current = []
            tables.append(current)
        elif current is not None and line.startswith("| "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            current.append(((cells[0], cells[1]), line))
        else:
            current = None
    return tables


def _merged(old, new):
    """``old`` rows with every (data, model) that ``new`` holds replaced in place."""
    fresh = {}
    for key, line in new:
        fresh.setdefault(key, []).append(line)
    out, placed = [], set()
    for key, line in old:
        if key not in fresh:
            out.append(line)
        elif key not in placed:
            out += fresh[key]
            placed.add(key)
    return out + [line for key, line in new if key not in placed]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baselines-dir", type=Path, default=None)
    parser.add_argument("--n-sereega", type=int, default=100)
    parser.add_argument("--n-nmm", type=int, default=16)
    parser.add_argument(
        "--models", default=None,
        help="comma-separated shipped models to measure (default: all); the "
        "rows of the others are kept from the existing results file",
    )  # fmt: skip
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python benchmarks/bench_safeguard.py", *given])
    models = list(shipped_models())
    if args.models is not None:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = sorted(set(models) - set(shipped_models()))
        if unknown:
            parser.error(f"unknown models {unknown}; shipped: {shipped_models()}")
    mne.set_log_level("ERROR")
    fwd = mne_mmnet.read_template_forward()
    gain = average_reference(fwd["sol"]["data"], 0)
    sets = {
        f"sereega ({args.n_sereega} samples)": mne_mmnet.simulate_sereega(
            args.n_sereega, seed=TEST_SEED, snr_db=5.0, fwd=fwd
        ),
        f"nmm ({args.n_nmm} samples)": mne_mmnet.simulate_nmm(
            args.n_nmm, seed=TEST_SEED, snr_db=5.0, fwd=fwd
        ),
    }
    adjacency = mne_mmnet.read_template_adjacency()
    steps, ratios = _measure(args, sets, models, gain, fwd, adjacency)
    previous = OUT.read_text() if OUT.is_file() else ""
    if args.models is not None and previous:  # the other models' rows kept
        old_steps, old_ratios = _previous_tables(previous)
        steps, ratios = _merged(old_steps, steps), _merged(old_ratios, ratios)
        first = previous.splitlines()[2].split("`")[1]
        command = f"{first}`; rows of {', '.join(models)} from `{command}"
    else:
        steps, ratios = [line for _, line in steps], [line for _, line in ratios]
    text = "\n".join(_header(command) + steps + _BOUND_HEADER + ratios) + "\n"
    OUT.write_text(text)
    print(text)


def _measure(args, sets, models, gain, fwd, adjacency):
    """Rows of the step table and of the bound table, as ``((data, model), row)``."""
    baselines = []
    if args.baselines_dir is not None:
        baselines = _baseline_files(args.baselines_dir)
    steps, ratios = [], []
    for data_name, sim in sets.items():
        y = average_reference(sim.eeg, 1)
        for name in models:
            done = len(steps)
            _mmnet_rows(data_name, y, gain, name, steps, sim, fwd, adjacency)
            print("\n".join(line for _, line in steps[done:]), flush=True)
            if not name.endswith("-unprojected"):
                med, low, high, data_ratio = _bound_ratio(y, gain, name)
                line = (
                    f"| {data_name} | {name} | {med:.0f} ({low:.0f}-{high:.0f}) "
                    f"| {data_ratio:.2f} |"
                )
                ratios.append(((data_name, name), line))
        for fname, label, domain in baselines:
            _baseline_rows(data_name, y, gain, fname, f"{label} ({domain})", steps)
    return steps, ratios


_BOUND_HEADER = [
    "",
    "Analytic bound (Proposition 1, certified layer norms) over the largest "
    "curvature of the energy (60 power iterations on Hessian-vector products) "
    "on the template at the sLORETA start, 8 samples:",
    "",
    "| data | model | bound / curvature (median, min, max) | data term alone "
    "(median) |",
    "| --- | --- | --- | --- |",
]


def _header(command):
    return [
        "# Certified, checked and rejected steps (5 dB)",
        "",
        f"`{command}`. *Certified*: a quadratic majorant "
        "valid on the whole segment of the step proves descent "
        "(`mne_mmnet.solver.segment`); *checked*: accepted because its energy was "
        "evaluated and did not rise; *rejected*: it would raise the energy (kept "
        "out by the safeguard; where the safeguard is off, taken). 'certified' "
        "runs (`guarantee='certified'`) cut each step to the minimiser of "
        "the lowest majorant over 22 segment lengths (16 by factors of 4 from 1, "
        "6 around the best on a sqrt(2) grid). *Step*: median "
        "`|D| / |x|` of the steps taken. *Guaranteed*: median share of a certified "
        "step's energy decrease that its majorant guarantees (1: the majorant is "
        "exact along the step). Global LE (mm) and AUC (%) of the final "
        "iterate.",
        "",
        "| data | model | mode | iterations | safeguard | certified | checked "
        "| rejected | clipped at bound | step | guaranteed | max energy change "
        "| global LE | AUC |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- | --- |",
    ]


if __name__ == "__main__":
    main()
