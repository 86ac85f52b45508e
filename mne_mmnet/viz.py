"""Figures: solver convergence (the paper's Fig. 2) and source maps (Fig. 1)."""

import numpy as np
from mne.utils import _validate_type


def _as_numpy(a):
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def plot_convergence(trace, *, sample=None, ax=None, show=True):
    """Plot the MM energy per iteration: total, data fidelity and prior.

    Parameters
    ----------
    trace : MMTrace
        The trace returned by :func:`mne_mmnet.solve_mm` or
        :func:`mne_mmnet.apply_mmnet_inverse` with ``return_trace=True``.
    sample : int | None
        Which sample of a batch to plot; ``None`` plots the batch mean with
        its range shaded.
    ax : matplotlib.axes.Axes | None
        Where to draw; ``None`` makes a new figure.
    show : bool
        Whether to show the figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure.

    Notes
    -----
    Every curve is non-increasing for the total energy: each MM step
    decreases it, or leaves it unchanged when the descent safeguard rejects
    the whole step. Iterations where the safeguard shortened the step are
    marked.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
    else:
        fig = ax.figure
    curves = {
        "total": _as_numpy(trace.total),
        "data fidelity": _as_numpy(trace.fidelity),
        "prior": _as_numpy(trace.prior),
    }
    for (name, values), color in zip(curves.items(), ("k", "C0", "C1")):
        values = values.reshape(len(values), -1)
        its = np.arange(len(values))
        if sample is not None:
            ax.plot(its, values[:, sample], color=color, label=name)
            continue
        ax.plot(its, values.mean(axis=1), color=color, label=name)
        if values.shape[1] > 1:
            lo, hi = values.min(axis=1), values.max(axis=1)
            ax.fill_between(its, lo, hi, color=color, alpha=0.15, lw=0)
    fired = getattr(trace, "safeguard", None)
    if fired is not None:
        fired = _as_numpy(fired).reshape(len(_as_numpy(fired)), -1)
        fired = fired[:, sample] if sample is not None else fired.sum(axis=1)
        its = np.nonzero(fired > 0)[0] + 1  # firing at step k affects iterate k+1
        total = curves["total"].reshape(len(curves["total"]), -1)
        total = total[:, sample] if sample is not None else total.mean(axis=1)
        its = its[its < len(total)]
        if len(its):
            ax.plot(its, total[its], "rv", ms=5, label="safeguard shortened step")
    ax.set(xlabel="MM iteration", ylabel="energy", title="MM-Net convergence")
    ax.legend(frameon=False)
    if show:
        plt.show()
    return fig


def plot_source_comparison(
    ground_truth, estimates, *, positions, sfreq, time_index=None, show=True
):
    """Plot source maps of several estimates beside the ground truth.

    Parameters
    ----------
    ground_truth : ndarray, shape (n_sources, n_times) | None
        Simulated sources; ``None`` if unknown (then the peak time of the first
        estimate is shown).
    estimates : dict of str to ndarray, shape (n_sources, n_times)
        Estimates by method name (a leading batch axis of length one is
        accepted).
    positions : ndarray, shape (n_sources, 3)
        Source positions in metres (``fwd["source_rr"]``).
    sfreq : float
        Sampling frequency in Hz.
    time_index : int | None
        Time sample to map; ``None`` takes the peak of the ground truth.
    show : bool
        Whether to show the figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Rows: top, left and right views of ``|x|`` normalised at the mapped
        time, then every panel's time course (nA·m) at one region, the
        strongest of the ground truth (or of the first estimate).
    """
    import matplotlib.pyplot as plt

    _validate_type(estimates, dict, "estimates")
    maps = {}
    if ground_truth is not None:
        maps["ground truth"] = _as_numpy(ground_truth)
    for name, est in estimates.items():
        est = _as_numpy(est)
        maps[name] = est[0] if est.ndim == 3 else est
    first = next(iter(maps.values()))
    if time_index is None:
        time_index = int(np.argmax(np.abs(first).max(axis=0)))
    # every time course shows the same region: the strongest of the first map
    # (the ground truth when given)
    region = int(np.argmax(np.abs(first).max(axis=1)))
    pos = _as_numpy(positions) * 1e3
    left = pos[:, 0] < 0
    views = (
        ("top", np.ones(len(pos), bool), (0, 1)),
        ("left", left, (1, 2)),
        ("right", ~left, (1, 2)),
    )
    ncol = len(maps)
    fig, axes = plt.subplots(
        4, ncol, figsize=(2.6 * ncol, 8.4), layout="constrained", squeeze=False
    )
    times = np.arange(first.shape[1]) / sfreq * 1e3
    for ci, (name, data) in enumerate(maps.items()):
        amp = np.abs(data[:, time_index])
        amp = amp / amp.max() if amp.max() > 0 else amp
        for ri, (view, mask, (i, j)) in enumerate(views):
            ax = axes[ri, ci]
            order = np.argsort(amp[mask])  # strongest drawn last, on top
            xs, ys = pos[mask][order, i], pos[mask][order, j]
            if view == "left":
                xs = -xs  # look at the left hemisphere from the left
            # the cortex in grey, then every source above 5% of the maximum
            ax.scatter(xs, ys, c="0.85", s=7, lw=0)
            shown = amp[mask][order] > 0.05
            sc = ax.scatter(
                xs[shown],
                ys[shown],
                c=amp[mask][order][shown],
                s=9,
                cmap="hot_r",
                vmin=0,
                vmax=1,
            )
            ax.set_aspect("equal")
            ax.set_axis_off()
            if ri == 0:
                ax.set_title(name)
            if ci == 0:
                ax.text(
                    0,
                    0.5,
                    view,
                    transform=ax.transAxes,
                    rotation=90,
                    ha="right",
                    va="center",
                )
        ax = axes[3, ci]
        ax.plot(times, 1e9 * data[region], color="k")
        ax.axvline(times[time_index], color="r", lw=0.8, ls="--")
        ax.set(xlabel="time (ms)", title=f"region {region}")
        if ci == 0:
            ax.set_ylabel("amplitude (nA·m)")
    fig.colorbar(sc, ax=axes[:3, -1], shrink=0.6, label="|x| / max")
    if show:
        plt.show()
    return fig
