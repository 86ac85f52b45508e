"""Prepared inverses, caches shared by threads, long recordings, epoch checks."""

import threading

import mne
import numpy as np
import pytest

from mne_mmnet import (
    TEMPLATE_CH_NAMES,
    apply_mmnet_inverse,
    apply_mmnet_inverse_epochs,
    make_mmnet_inverse,
    read_template_forward,
)
from mne_mmnet.inverse import _operator, _run
from mne_mmnet.simulation import simulate_broad


@pytest.fixture(scope="module")
def fwd():
    return read_template_forward(verbose=False)


def _evoked(n_times=40, seed=0, sfreq=256.0):
    sim = simulate_broad(1, seed=seed, n_times=n_times, sfreq=sfreq, verbose=False)
    info = mne.create_info(list(TEMPLATE_CH_NAMES), sfreq, "eeg")
    ev = mne.EvokedArray(sim.eeg[0].astype(float), info, tmin=-0.05)
    return ev.set_eeg_reference("average", projection=True, verbose=False)


def test_prepared_inverse_equals_one_line_call(fwd):
    evoked = _evoked()
    inv = make_mmnet_inverse(evoked.info, fwd, "sereega", device="cpu")
    assert "sereega" in repr(inv) and inv.ch_names == evoked.ch_names
    a = apply_mmnet_inverse(evoked, inv)
    b = apply_mmnet_inverse(evoked, fwd, "sereega", device="cpu")
    np.testing.assert_allclose(a.data, b.data, rtol=1e-6, atol=1e-6 * abs(b.data).max())
    with pytest.raises(ValueError, match="prepared inverse for model 'sereega'"):
        apply_mmnet_inverse(evoked, inv, model="nmm")
    other = evoked.copy()
    other.info["bads"] = [other.ch_names[3]]
    with pytest.raises(ValueError, match="make a new one"):
        apply_mmnet_inverse(other, inv)


def test_calls_by_name_reuse_their_prepared_inverse(fwd, monkeypatch):
    """The second call by name prepares nothing; an edited forward or another
    channel set is prepared again (compared by content, not identity)."""
    _operator._OPERATORS.clear()
    made = []
    init = _operator.MMNetInverse.__init__

    def counting(self, **kwargs):
        made.append(kwargs["leadfield"])
        init(self, **kwargs)

    monkeypatch.setattr(_operator.MMNetInverse, "__init__", counting)
    evoked = _evoked(n_times=24)
    first = apply_mmnet_inverse(evoked, fwd, "sereega", device="cpu", verbose=False)
    again = apply_mmnet_inverse(evoked, fwd, "sereega", device="cpu", verbose=False)
    assert len(made) == 1
    np.testing.assert_array_equal(first.data, again.data)
    edited = fwd.copy()
    edited["sol"]["data"] = edited["sol"]["data"].copy()
    edited["sol"]["data"][:, :300] *= 0.5
    other = apply_mmnet_inverse(evoked, edited, "sereega", device="cpu", verbose=False)
    assert len(made) == 2
    assert np.abs(other.data - first.data).max() > 1e-3 * np.abs(first.data).max()
    edited["sol"]["data"][:, 300:600] *= 0.25  # edited in place: prepared again
    apply_mmnet_inverse(evoked, edited, "sereega", device="cpu", verbose=False)
    assert len(made) == 3
    edited["sol"]["data"][:, :300] *= 2.0  # back to fwd's content: reused
    edited["sol"]["data"][:, 300:600] *= 4.0
    back = apply_mmnet_inverse(evoked, edited, "sereega", device="cpu", verbose=False)
    assert len(made) == 3
    np.testing.assert_array_equal(back.data, first.data)
    evoked.info["bads"] = [evoked.ch_names[5]]
    apply_mmnet_inverse(evoked, fwd, "sereega", device="cpu", verbose=False)
    assert len(made) == 4 and made[-1].shape[0] == len(evoked.ch_names) - 1
    assert len(_operator._OPERATORS) == 4


def test_threads_share_one_freshly_loaded_model(fwd):
    _operator._MODELS.clear()  # fresh: the first calls race to load it
    _operator._OPERATORS.clear()
    evoked = _evoked(n_times=24)
    results, errors = [None] * 8, []

    def work(k):
        try:
            stc = apply_mmnet_inverse(evoked, fwd, "nmm", device="cpu", verbose=False)
            results[k] = stc.data
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for data in results[1:]:
        np.testing.assert_array_equal(data, results[0])
    assert len([k for k in _operator._MODELS if k[1] == "nmm"]) == 1


def test_windowed_long_solve_matches_whole(fwd, monkeypatch):
    """Where both fit, overlapping windows agree with the whole-window solve."""
    evoked = _evoked(n_times=600, seed=4, sfreq=500.0)
    whole = apply_mmnet_inverse(evoked, fwd, model=None, n_iter=5, device="cpu")
    monkeypatch.setattr(_run, "WINDOW_THRESHOLD", 256)
    monkeypatch.setattr(_run, "WINDOW", 256)
    monkeypatch.setattr(_run, "OVERLAP", 32)
    windowed = apply_mmnet_inverse(evoked, fwd, model=None, n_iter=5, device="cpu")
    assert windowed.data.shape == whole.data.shape
    a, b = whole.data.ravel(), windowed.data.ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.95
    t_peak = np.abs(whole.data).max(0).argmax()
    assert (
        np.abs(windowed.data[:, t_peak]).argmax()
        == np.abs(whole.data[:, t_peak]).argmax()
    )
    weights = _run._crossfade(600, _run._windows(600))
    np.testing.assert_allclose(weights.sum(0), 1.0)


def test_bad_epoch_reported_before_any_solve(fwd, monkeypatch):
    evoked = _evoked(n_times=20)
    data = np.repeat(evoked.data[None], 6, axis=0)
    data[4, 7, 3] = np.nan
    epochs = mne.EpochsArray(data, evoked.info, tmin=-0.05, verbose=False)
    calls = []
    monkeypatch.setattr(_run, "_solve_batch", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError, match=r"epochs\[4\] contains NaN"):
        apply_mmnet_inverse_epochs(epochs, fwd, model=None, batch_size=2)
    assert not calls


def test_any_finite_amplitude_gives_the_scaled_result(fwd):
    evoked = _evoked(n_times=8)
    ref = apply_mmnet_inverse(evoked, fwd, model=None, n_iter=3, device="cpu")
    # 1e-300 and 1e300: the squares of the data leave float64 (the norm
    # would underflow to 0 or overflow to inf without the peak division)
    for factor in (1e-300, 1e-13, 1e18, 1e300):
        scaled = evoked.copy()
        scaled.data *= factor
        with pytest.warns(RuntimeWarning, match="check the units"):
            stc = apply_mmnet_inverse(scaled, fwd, model=None, n_iter=3, device="cpu")
        atol = 1e-6 * factor * abs(ref.data).max()
        np.testing.assert_allclose(stc.data, factor * ref.data, rtol=1e-4, atol=atol)
    # amplitudes that leave float64 are refused, never returned as 0 or inf
    from mne_mmnet.inverse._run import _scaled

    x, leadfield = np.ones((1, 2, 1)), np.eye(2)
    y_unit = np.full((1, 2, 1), 0.5**0.5)
    np.testing.assert_allclose(_scaled(x, leadfield, y_unit, np.array([2.0])),
                               2 * 0.5**0.5 * x)  # fmt: skip
    # sources = data / gain: 1e-320 / 1e10 underflows, 1e308 / 1e-10 overflows
    for gain, factor in ((1e10, 1e-320), (1e-10, 1e308)):
        with pytest.raises(ValueError, match="range of float64.*units"):
            _scaled(x, gain * leadfield, y_unit, np.array([factor]))


def test_names_matched_ignoring_case_and_edf_style(fwd):
    from mne.utils import catch_logging

    evoked = _evoked(n_times=16)
    ref = apply_mmnet_inverse(evoked, fwd, model=None, n_iter=2, device="cpu")
    for rename in (str.upper, lambda n: f"EEG {n}-REF"):
        other = evoked.copy().rename_channels(rename)
        with catch_logging() as log:
            stc = apply_mmnet_inverse(
                other, fwd, model=None, n_iter=2, device="cpu", verbose=True
            )
            text = log.getvalue()
        assert "Matched" in text
        assert f"{rename('Fp1')} -> Fp1" in text and f"{rename('Cz')} -> Cz" in text
        np.testing.assert_allclose(stc.data, ref.data, rtol=1e-6)
    with pytest.raises(ValueError, match=r"make_cap_forward\(inst\.info\)"):
        bad = evoked.copy().rename_channels({"Cz": "XYZ"})
        apply_mmnet_inverse(bad, fwd, model=None, device="cpu")


def test_name_matched_electrode_at_another_place_is_refused(fwd):
    """A BioSemi A1 (vertex) must not be taken for the template's earlobe A1."""
    evoked = _evoked(n_times=16)
    montage = mne.channels.make_standard_montage("colin27_1020")
    pos = montage.get_positions()
    ch_pos = dict(pos["ch_pos"])
    ch_pos["A1"] = ch_pos["Cz"] + np.array([0.0, 0.0, 0.005])  # on the vertex
    evoked.set_montage(mne.channels.make_dig_montage(
        ch_pos={k: v for k, v in ch_pos.items() if k in evoked.ch_names},
        nasion=pos["nasion"], lpa=pos["lpa"], rpa=pos["rpa"],
        coord_frame=pos["coord_frame"],
    ))  # fmt: skip
    with pytest.raises(ValueError, match=r"A1 \(.* cm from A1\).*make_cap_forward"):
        apply_mmnet_inverse(evoked, fwd, model=None, device="cpu")
    evoked.info["bads"] = ["A1"]  # the advice works
    apply_mmnet_inverse(evoked, fwd, model=None, n_iter=1, device="cpu")


def test_every_way_of_running_a_model_agrees(fwd):
    """apply_mmnet_inverse, a prepared inverse, solve_mm(model=) and the
    benchmark's factory run a shipped model with the same settings."""
    from mne_mmnet import load_model, solve_mm
    from mne_mmnet.bench import make_method
    from mne_mmnet.problem import restore_scale

    evoked = _evoked(n_times=32, seed=9)
    ref = apply_mmnet_inverse(evoked, fwd, "nmm", device="cpu").data
    inv = make_mmnet_inverse(evoked.info, fwd, "nmm", device="cpu")
    prepared = apply_mmnet_inverse(evoked, inv).data
    y = evoked.copy().apply_proj().data
    y = y - y.mean(0)
    L = fwd["sol"]["data"] - fwd["sol"]["data"].mean(0)
    x = solve_mm(y / np.linalg.norm(y), L, model=load_model("nmm", device="cpu"),
                 device="cpu")  # fmt: skip
    direct = restore_scale(np.asarray(x, float)[None], L, y[None])[0]
    bench = make_method("MM-Net (nmm)", fwd)(evoked.copy().apply_proj().data[None])[0]
    scale = np.abs(ref).max()
    for other in (prepared, direct, bench):
        np.testing.assert_allclose(other, ref, rtol=1e-4, atol=1e-6 * scale)
