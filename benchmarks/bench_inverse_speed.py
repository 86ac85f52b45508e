"""Speed and memory of MM-Net inference against MNE's prepared sLORETA.

Prints and writes benchmarks/results/inverse_speed.md, from one run:

* the first call in a fresh process (T = 64: loading the model, its
  certified layer norms, the start kernel), what a new script or notebook
  pays once;
* one evoked at T = 64 and T = 500: ``apply_mmnet_inverse`` by name (second
  call: the model is cached), with a prepared ``make_mmnet_inverse`` object,
  ``mne.minimum_norm.apply_inverse`` with a prepared sLORETA operator, ratios;
* 1,000 epochs at T = 64 through ``apply_mmnet_inverse_epochs``: epochs/s,
  the network's FLOPs per epoch (``torch.utils.flop_counter``), this
  machine's float32 matmul GFLOP/s measured in the same run, and the
  fraction of that limit reached; the same epochs with the other step
  guarantee (``"certified"`` / ``"checked"``);
* one recording of T = 20,000 samples (windowed): time and peak memory of a
  fresh process.

    python benchmarks/bench_inverse_speed.py [--model broad] [--device cpu]
"""

import argparse
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import mne
import numpy as np
import torch
from mne.minimum_norm import (
    apply_inverse,
    make_inverse_operator,
    prepare_inverse_operator,
)

import mne_mmnet

OUT = Path(__file__).parent / "results" / "inverse_speed.md"

_LONG = """
import time, mne, numpy as np, mne_mmnet
mne.set_log_level("ERROR")
fwd = mne_mmnet.read_template_forward()
rng = np.random.default_rng(0)
info = mne.create_info(fwd.ch_names, 500.0, "eeg")
evoked = mne.EvokedArray(1e-6 * rng.standard_normal((90, {n_times})), info)
evoked.set_eeg_reference("average", projection=True)
t0 = time.perf_counter()
mne_mmnet.apply_mmnet_inverse(evoked, fwd, model={model!r}, device={device!r})
seconds = time.perf_counter() - t0
# VmHWM: this process's own peak resident memory (ru_maxrss would carry over
# the parent's peak across fork and exec)
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
print(seconds, float(status[0]) / 2**20)
"""


_COLD = """
import time, mne, numpy as np, mne_mmnet
mne.set_log_level("ERROR")
fwd = mne_mmnet.read_template_forward()
info = mne.create_info(fwd.ch_names, 512.0, "eeg")
data = 1e-6 * np.random.default_rng(0).standard_normal((90, 64))
evoked = mne.EvokedArray(data, info)
evoked.set_eeg_reference("average", projection=True)
t0 = time.perf_counter()
mne_mmnet.apply_mmnet_inverse(evoked, fwd, model={model!r}, device={device!r})
first = time.perf_counter() - t0
t0 = time.perf_counter()
mne_mmnet.apply_mmnet_inverse(evoked, fwd, model={model!r}, device={device!r})
print(first, time.perf_counter() - t0)
"""


def _best_of(func, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times)


def _evoked(fwd, n_times, sfreq, seed=1):
    sim = mne_mmnet.simulation.simulate_broad(
        1, seed=seed, n_times=n_times, sfreq=sfreq, verbose=False
    )
    info = mne.create_info(fwd.ch_names, sfreq, "eeg")
    evoked = mne.EvokedArray(sim.eeg[0].astype(float), info)
    evoked.set_montage("colin27_1020")
    return evoked.set_eeg_reference("average", projection=True)


def _per_evoked(fwd, model, device, n_times, sfreq, repeat):
    evoked = _evoked(fwd, n_times, sfreq)
    cov = mne.make_ad_hoc_cov(evoked.info)
    inv = make_inverse_operator(evoked.info, fwd, cov, fixed=True, depth=None)
    inv = prepare_inverse_operator(inv, nave=1, lambda2=1 / 9, method="sLORETA")
    prepared = mne_mmnet.make_mmnet_inverse(evoked.info, fwd, model, device=device)
    mne_mmnet.apply_mmnet_inverse(evoked, fwd, model, device=device)  # warm up
    calls = (
        lambda: mne_mmnet.apply_mmnet_inverse(evoked, fwd, model, device=device),
        lambda: mne_mmnet.apply_mmnet_inverse(evoked, prepared),
        lambda: apply_inverse(evoked, inv, 1 / 9, "sLORETA", prepared=True),
    )
    # interleaved, so that a change of load touches the three alike
    best = [math.inf] * len(calls)
    for _ in range(repeat):
        for k, call in enumerate(calls):
            best[k] = min(best[k], _best_of(call, 1))
    return tuple(best)


def _matmul_gflops(n=2048, repeat=5):
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = _best_of(lambda: torch.matmul(a, b), repeat)
    return 2 * n**3 / best / 1e9


def _flops_per_epoch(fwd, model, device):
    from torch.utils.flop_counter import FlopCounterMode

    evoked = _evoked(fwd, 64, 512.0, seed=2)
    inv = mne_mmnet.make_mmnet_inverse(evoked.info, fwd, model, device=device)
    with FlopCounterMode(display=False) as counter:
        mne_mmnet.apply_mmnet_inverse(evoked, inv)
    return counter.get_total_flops()


def _epochs_rate(fwd, model, device, n_epochs=1000, batch_size=50, guarantee=None):
    evoked = _evoked(fwd, 64, 512.0, seed=3)
    rng = np.random.default_rng(0)
    data = evoked.data[None] * (1 + 0.1 * rng.standard_normal((n_epochs, 1, 1)))
    data = data + 0.2 * np.abs(evoked.data).max() * rng.standard_normal(data.shape)
    epochs = mne.EpochsArray(data, evoked.info, verbose=False)
    inv = mne_mmnet.make_mmnet_inverse(epochs.info, fwd, model, device=device)
    t0 = time.perf_counter()
    mne_mmnet.apply_mmnet_inverse_epochs(
        epochs, inv, batch_size=batch_size, guarantee=guarantee, verbose=False
    )
    return n_epochs / (time.perf_counter() - t0)


def _cold(model, device):
    code = _COLD.format(model=model, device=device)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True)  # fmt: skip
    first, second = map(float, out.stdout.split()[-2:])
    return first, second


def _long(model, device, n_times=20_000):
    code = _LONG.format(n_times=n_times, model=model, device=device)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True)  # fmt: skip
    seconds, peak_gb = map(float, out.stdout.split()[-2:])
    return seconds, peak_gb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=mne_mmnet.pretrained.DEFAULT_MODEL)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--n-epochs", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    mne.set_log_level("ERROR")
    fwd = mne_mmnet.read_template_forward()
    device = torch.device(args.device)
    cold_first, cold_second = _cold(args.model, args.device)
    rows = [(n, *_per_evoked(fwd, args.model, device, n, sf, args.repeat))
            for n, sf in ((64, 512.0), (500, 500.0))]  # fmt: skip
    gflops = _matmul_gflops()
    flops = _flops_per_epoch(fwd, args.model, device)
    rate = _epochs_rate(fwd, args.model, device, args.n_epochs)
    shipped = mne_mmnet.pretrained.load_model(args.model, verbose=False).guarantee
    other = "checked" if shipped == "certified" else "certified"
    other_rate = _epochs_rate(fwd, args.model, device, args.n_epochs, guarantee=other)
    limit = gflops * 1e9 / flops
    long_s, long_gb = _long(args.model, args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        platform.processor() or platform.machine()
    )  # fmt: skip
    lines = [
        "# MM-Net inference speed and memory",
        "",
        f"`python benchmarks/bench_inverse_speed.py --model {args.model} --device "
        f"{args.device} --n-epochs {args.n_epochs} --repeat {args.repeat}`: "
        f"{name}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; best of {args.repeat} (the three "
        f"methods' calls interleaved); 90 channels.",
        "",
        f"First call in a fresh process (T = 64; loads the model, computes its "
        f"certified layer norms and the start kernel): **{cold_first:.1f} s**; "
        f"the second call: {cold_second:.2f} s.",
        "",
        "| T | MM-Net by name (s) | MM-Net prepared (s) | sLORETA prepared (s) "
        "| by name / sLORETA | by name / prepared |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n, by_name, with_op, slor in rows:
        lines.append(
            f"| {n} | {by_name:.3f} | {with_op:.3f} | {slor:.4f} "
            f"| {by_name / slor:.0f}x | {by_name / with_op:.2f} |"
        )
    lines += [
        "",
        f"{args.n_epochs} epochs at T = 64 (batches of 50): **{rate:.1f} epochs/s**; "
        f"the network costs {flops / 1e9:.2f} GFLOP per epoch; float32 matmul "
        f"here: {gflops:.0f} GFLOP/s, so at most {limit:.1f} epochs/s: "
        f"**{100 * rate / limit:.0f}% of that limit**. The model runs "
        f"`guarantee={shipped!r}` as shipped; with `guarantee={other!r}` the "
        f"same epochs ran at {other_rate:.1f} epochs/s.",
        "",
        f"One recording of 20,000 samples (windows of 512, 64 overlap): "
        f"**{long_s:.1f} s, peak memory {long_gb:.2f} GB** (whole process, VmHWM).",
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
