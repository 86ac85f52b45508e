"""Figures render offscreen to non-blank PNGs and show what they claim."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mne_mmnet import read_template_forward, solve_mm  # noqa: E402
from mne_mmnet.viz import plot_convergence, plot_source_comparison  # noqa: E402


def _png_is_drawn(fig, fname):
    fig.savefig(fname, dpi=60)
    image = plt.imread(fname)[..., :3]
    plt.close(fig)
    # a blank canvas is one flat colour
    return image.std() > 0.02 and (image < 0.9).mean() > 0.005


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    fwd = read_template_forward(verbose=False)
    gain = fwd["sol"]["data"] - fwd["sol"]["data"].mean(axis=0)
    x = np.zeros((2, 994, 16))
    x[0, 10, 4:9] = 1.0
    x[1, 700, 2:12] = 1.0
    y = np.einsum("cs,bst->bct", gain, x) + 1e-3 * rng.standard_normal((2, 90, 16))
    return fwd, gain, x, y


def test_plot_convergence(problem, tmp_path):
    _, gain, _, y = problem
    _, trace = solve_mm(
        y, gain, n_iter=5, init="random", step="directional", seed=0,
        return_trace=True, verbose=False,
    )  # fmt: skip
    fig = plot_convergence(trace, show=False)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert {"total", "data fidelity", "prior"} <= set(labels)
    total = ax.get_lines()[labels.index("total")].get_ydata()
    np.testing.assert_allclose(total, trace.total.mean(axis=1))
    assert _png_is_drawn(fig, tmp_path / "conv.png")
    fig = plot_convergence(trace, sample=1, show=False)
    assert _png_is_drawn(fig, tmp_path / "conv1.png")


def test_plot_source_comparison(problem, tmp_path):
    fwd, _, x, _ = problem
    est = x[0] + 0.1 * np.random.default_rng(1).standard_normal(x[0].shape)
    fig = plot_source_comparison(
        x[0], {"noisy": est}, positions=fwd["source_rr"], sfreq=100.0, show=False
    )
    # ground truth + one estimate: 2 columns of 4 rows (+ the colour bar)
    assert len(fig.axes) == 9
    assert fig.axes[0].get_title() == "ground truth"
    assert _png_is_drawn(fig, tmp_path / "maps.png")
    with pytest.raises(TypeError, match="estimates"):
        plot_source_comparison(x[0], [est], positions=fwd["source_rr"], sfreq=1.0)
