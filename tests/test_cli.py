"""The mne-mmnet command line: dispatch, demo and invert end to end."""

import re

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


def test_train_defaults_are_the_shipped_default_models():
    """`mne-mmnet train` without model options trains `default_config()`."""
    from mne_mmnet.training import default_config
    from mne_mmnet.training._cli import _mmnet_config

    parser = build_parser()
    args = parser.parse_args(["train", "--data", "d", "--out", "o"])
    assert _mmnet_config(args, 994) == default_config(994)
    args = parser.parse_args(
        ["train", "--data", "d", "--out", "o", "--step", "diagonal",
         "--prior-hidden", "256,128", "--bound", "none", "--no-safeguard"]
    )  # fmt: skip
    config = _mmnet_config(args, 994)
    expected = default_config(994)
    expected["prior"]["hidden"] = [256, 128]
    expected.update(step="diagonal", gamma=1.999, bound=None, safeguard=False)
    assert config == expected


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


@pytest.mark.parametrize("model", ["classical", None])
def test_demo_runs(tmp_path, capsys, model):
    """The README's first command: the untrained solver and the shipped default."""
    from mne_mmnet.pretrained import DEFAULT_MODEL

    choice = [] if model is None else ["--model", model]
    assert main(["demo", *choice, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "LE (mm)" in out and "sLORETA" in out
    label = "MM (classical)" if model else f"MM-Net ({DEFAULT_MODEL})"
    row = next(line for line in out.splitlines() if line.startswith(label))
    le, area = (float(v) for v in row[len(label) :].split()[:2])
    assert 0 <= le < 200 and 0.5 < area <= 1
    image = matplotlib.image.imread(tmp_path / "demo.png")
    # a real figure, not a blank canvas
    assert image.shape[0] > 300 and image[..., :3].std() > 0.05


def _cli(*args, cwd):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "mne_mmnet", *args], capture_output=True, text=True,
        cwd=cwd, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def two_conditions(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    fwd = read_template_forward(verbose=False)
    sim = simulate_sereega(2, seed=3, snr_db=10.0, fwd=fwd, verbose=False)
    info = mne.create_info(list(TEMPLATE_CH_NAMES), sim.sfreq, "eeg")
    evokeds = []
    for k in range(2):
        ev = mne.EvokedArray(sim.eeg[k].astype(float), info, comment="same")
        evokeds.append(ev.set_eeg_reference("average", projection=True, verbose=False))
    mne.write_evokeds(tmp / "same-ave.fif", evokeds, verbose=False)
    evokeds[1].data[5, 3] = np.nan
    mne.write_evokeds(tmp / "nan-ave.fif", evokeds, verbose=False)
    raw = mne.io.RawArray(sim.eeg[0].astype(float), info, verbose=False)
    raw.save(tmp / "rec_raw.fif", verbose=False)
    (tmp / "notes.txt").write_text("not EEG")
    return tmp


def test_invert_cli_bad_inputs_exit_non_zero_with_one_line(two_conditions):
    tmp = two_conditions
    base = ["invert", "--model", "classical", "--n-iter", "1", "--device", "cpu"]
    cases = {
        "missing.fif": "no file",
        "notes.txt": "not a FIF file",
        "rec_raw.fif": "holds no Evoked data",
        "nan-ave.fif": r"condition 1 .* NaN or inf values in 1 EEG channel",
    }
    for name, message in cases.items():
        out = tmp / f"out-{name}"
        res = _cli(*base, str(tmp / name), "--out", str(out / "s"), cwd=tmp)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.stderr
        assert re.search(message, lines[0]), lines[0]  # the channel, not all 90
        assert not list(out.parent.glob(f"out-{name}/*.stc"))  # nothing written


def test_invert_cli_unique_names_and_no_silent_overwrite(two_conditions):
    tmp = two_conditions
    args = ["invert", str(tmp / "same-ave.fif"), "--out", str(tmp / "o" / "s"),
            "--model", "classical", "--n-iter", "1", "--device", "cpu"]  # fmt: skip
    assert _cli(*args, cwd=tmp).returncode == 0
    assert (tmp / "o" / "s-same-lh.stc").exists()
    assert (tmp / "o" / "s-same-1-lh.stc").exists()  # two conditions, two files
    again = _cli(*args, cwd=tmp)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert _cli(*args, "--overwrite", cwd=tmp).returncode == 0
