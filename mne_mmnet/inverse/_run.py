"""Run a prepared MM-Net inverse on referenced data arrays.

One place that turns ``(batch, n_channels, n_times)`` referenced data into
scaled source estimates: unit-norm data (any finite amplitude gives the
linearly scaled result), the start from the prepared kernel, the solver with
the model's own settings, the amplitude fit, and overlapping windows for long
recordings (the networks are length-agnostic; memory grows with the window,
not the recording).
"""

import logging

import numpy as np
from mne.utils import logger

from ..problem import restore_scale

#: recordings longer than this are solved in overlapping windows
WINDOW_THRESHOLD = 2048
#: window length and overlap (samples) of the windowed solve
WINDOW, OVERLAP = 512, 64
#: windows solved at once (bounds the memory of long recordings)
WINDOW_BATCH = 2
#: settings of the hand-crafted solver (``model=None``): the data term alone
#: with the analytic bound, from the sLORETA estimate, directional steps;
#: the best of the classical settings in the benchmark (see its README table)
CLASSICAL_SETTINGS = dict(
    n_iter=10, bound="analytic", step="directional", init="sloreta", gamma=None
)


def _progress(total, desc):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, unit="batch", leave=False,
        disable=logger.getEffectiveLevel() > logging.INFO or total <= 1,
    )  # fmt: skip


def _unit_norm(y):
    """Each sample as ``factor * unit`` with ``|unit| = 1``, for any amplitude.

    Dividing by the peak first keeps the squares finite for any finite
    amplitude (1e-320 and 1e300 V give the same unit data).
    """
    peak = np.abs(y).max(axis=(1, 2))
    y = np.divide(y, peak[:, None, None], out=np.zeros_like(y),
                  where=peak[:, None, None] > 0)  # fmt: skip
    norms = np.linalg.norm(y.reshape(len(y), -1), axis=1)
    unit = np.divide(y, norms[:, None, None], out=np.zeros_like(y),
                     where=norms[:, None, None] > 0)  # fmt: skip
    return unit, peak * norms


def _scaled(x, leadfield, y_unit, factor):
    """Fit the amplitude of ``x`` to ``factor * y_unit``.

    The least-squares scale is taken on the unit data, then multiplied by
    ``factor``; amplitudes outside float64's range are refused.
    """
    with np.errstate(over="ignore", under="ignore"):
        out = restore_scale(x, leadfield, y_unit) * factor[:, None, None]
    if not np.isfinite(out).all() or not np.abs(out).max(axis=(1, 2)).all():
        raise ValueError(
            "The source amplitudes of data with a norm of "
            f"{factor.min():.3g} to {factor.max():.3g} leave the range of "
            "float64; EEG data are expected in volts: check the units of the data."
        )
    return out


def _solve_batch(inv, y, *, n_iter, seed, guarantee=None):
    """Solve (batch, n_ch, T) referenced data; scaled sources and the trace."""
    import torch

    from ..solver import solve_mm
    from ..solver.linear import finish_start

    if guarantee is None:
        guarantee = getattr(inv.model, "guarantee", "checked")
    dtype = "float32"
    net, L, kernel = inv._arrays(dtype)
    y_unit, factor = _unit_norm(y)  # the energy is scale free
    y_t = torch.as_tensor(y_unit, dtype=L.dtype, device=inv.device)
    x0 = None
    if kernel is not None:
        x0 = torch.matmul(kernel, y_t)
        if net is not None:
            with torch.no_grad():
                x0 = finish_start(x0, net.init, net.prior, gate=net.gate, y=y_t, L=L)
    settings = {}
    if inv.model is None:
        settings = dict(CLASSICAL_SETTINGS)
        settings.pop("init")
    if n_iter is not None:
        settings["n_iter"] = int(n_iter)
    x, trace = solve_mm(
        y_t, L, model=net, x0=x0, device=inv.device, seed=seed, dtype=dtype,
        guarantee=guarantee, return_trace=True, verbose=False, **settings,
    )  # fmt: skip
    x = x.double().cpu().numpy()
    return _scaled(x, inv.leadfield, y_unit, factor), trace


def _windows(n_times):
    hop = WINDOW - OVERLAP
    starts = list(range(0, max(n_times - WINDOW, 0) + 1, hop))
    if starts[-1] + WINDOW < n_times:
        starts.append(n_times - WINDOW)
    return starts


def _crossfade(n_times, starts):
    """Overlap-add weights: linear ramps over the overlaps, summing to one."""
    weights = np.zeros((len(starts), n_times))
    ramp = np.ones(WINDOW)
    ramp[:OVERLAP] = (np.arange(OVERLAP) + 0.5) / OVERLAP
    ramp[-OVERLAP:] = ramp[:OVERLAP][::-1]
    for k, start in enumerate(starts):
        w = ramp.copy()
        if k == 0:
            w[:OVERLAP] = 1
        if k == len(starts) - 1:
            w[-OVERLAP:] = 1
        weights[k, start : start + WINDOW] = w
    return weights / weights.sum(0, keepdims=True)


def _solve_long(inv, y, *, n_iter, seed, guarantee=None):
    """One long recording in overlapping windows, cross-faded."""
    n_times = y.shape[-1]
    starts = _windows(n_times)
    weights = _crossfade(n_times, starts)
    out = np.zeros((inv.leadfield.shape[1], n_times))
    traces = []
    bar = _progress(int(np.ceil(len(starts) / WINDOW_BATCH)), "windows")
    for first in range(0, len(starts), WINDOW_BATCH):
        chunk = starts[first : first + WINDOW_BATCH]
        segs = np.stack([y[0, :, s : s + WINDOW] for s in chunk])
        keep = np.abs(segs).max(axis=(1, 2)) > 0
        x = np.zeros((len(chunk), out.shape[0], WINDOW))
        if keep.any():
            x[keep], trace = _solve_batch(inv, segs[keep], n_iter=n_iter, seed=seed,
                                          guarantee=guarantee)  # fmt: skip
            traces.append(trace)
        for k, start in enumerate(chunk):
            out[:, start : start + WINDOW] += weights[first + k, start:][:WINDOW] * x[k]
        bar.update()
    bar.close()
    return out[None], _concat_traces(traces)


def _concat_traces(traces):
    from dataclasses import fields

    if len(traces) == 1:
        return traces[0]
    merged = {
        f.name: None
        if getattr(traces[0], f.name) is None
        else np.concatenate([getattr(t, f.name) for t in traces], axis=1)
        for f in fields(traces[0])
    }
    return type(traces[0])(**merged)


def _run(inv, y, *, n_iter, seed, batch_size=16, desc="epochs", guarantee=None):
    """Scaled sources for (n, n_ch, T) referenced data, in batches."""
    if y.shape[-1] > WINDOW_THRESHOLD:
        results = [_solve_long(inv, y[k : k + 1], n_iter=n_iter, seed=seed,
                               guarantee=guarantee)
                   for k in range(len(y))]  # fmt: skip
        if len(results) == 1:  # no copy of a long recording's sources
            return results[0]
        return np.concatenate([r[0] for r in results]), _concat_traces(
            [r[1] for r in results]
        )
    out, traces = [], []
    bar = _progress(int(np.ceil(len(y) / batch_size)), desc)
    for b, start in enumerate(range(0, len(y), batch_size)):
        b_seed = None if seed is None else seed + b
        x, trace = _solve_batch(inv, y[start : start + batch_size], n_iter=n_iter,
                                seed=b_seed, guarantee=guarantee)  # fmt: skip
        out.append(x)
        traces.append(trace)
        bar.update()
    bar.close()
    return np.concatenate(out), _concat_traces(traces)
