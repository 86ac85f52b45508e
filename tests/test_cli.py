"""The mne-mmnet command line: dispatch, demo and invert end to end."""

import matplotlib
import mne
import numpy as np
import pytest

from mne_mmnet import TEMPLATE_CH_NAMES, read_template_forward
from mne_mmnet.cli import build_parser, main
from mne_mmnet.simulation import simulate_sereega

matplotlib.use("Agg")


def test_subcommands_registered(capsys):
    parser = build_parser()
    help_text = parser.format_help()
    for name in ("demo", "simulate", "train", "benchmark", "invert", "sys-info"):
        assert name in help_text
    assert main(["sys-info"]) == 0
    out = capsys.readouterr().out
    assert "mne-mmnet:" in out and "torch:" in out
    assert main([]) == 2  # no command: help, non-zero


def test_invert_writes_stc(tmp_path, capsys):
    fwd = read_template_forward(verbose=False)
    sim = simulate_sereega(2, seed=3, snr_db=10.0, fwd=fwd, verbose=False)
    info = mne.create_info(list(TEMPLATE_CH_NAMES), sim.sfreq, "eeg")
    evokeds = []
    for k, comment in enumerate(("cond A", "cond/B")):
        ev = mne.EvokedArray(sim.eeg[k].astype(float), info, comment=comment)
        ev.set_montage("colin27_1020")
        ev.set_eeg_reference("average", projection=True, verbose=False)
        evokeds.append(ev)
    fname = tmp_path / "sim-ave.fif"
    mne.write_evokeds(fname, evokeds, verbose=False)
    ret = main(
        [
            "invert",
            str(fname),
            "--out",
            str(tmp_path / "out" / "sub"),
            "--model",
            "classical",
            "--n-iter",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert ret == 0
    for tag in ("cond_A", "cond_B"):
        stc = mne.read_source_estimate(tmp_path / "out" / f"sub-{tag}")
        assert stc.data.shape == (994, sim.eeg.shape[-1])
        assert np.isfinite(stc.data).all() and np.abs(stc.data).max() > 0
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("model", ["classical"])
def test_demo_runs(tmp_path, capsys, model):
    assert main(["demo", "--model", model, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "LE (mm)" in out and "sLORETA" in out
    image = matplotlib.image.imread(tmp_path / "demo.png")
    # a real figure, not a blank canvas
    assert image.shape[0] > 300 and image[..., :3].std() > 0.05
