"""Property-based test of apply_mmnet_inverse over what users pass in.

Channel subsets and order, bad channels, length, sampling rate, start time,
reference and amplitude: either a documented error (ValueError) or a source
estimate with the right layout and finite values, the input left untouched
(data and info). `make test` runs a few seconds of it; `make test-all` sets
HYPOTHESIS_PROFILE=long.
"""

import warnings

import mne
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mne_mmnet import TEMPLATE_CH_NAMES, apply_mmnet_inverse, read_template_forward

FWD = read_template_forward(verbose=False)


@st.composite
def evokeds(draw):
    n_ch = draw(st.integers(8, 90))
    order = draw(st.permutations(range(90)))[:n_ch]
    names = [TEMPLATE_CH_NAMES[k] for k in order]
    n_times = draw(st.integers(1, 80))
    sfreq = draw(st.sampled_from([100.0, 256.0, 512.0, 1000.0, 2048.0]))
    tmin = draw(st.floats(-1.0, 1.0, allow_nan=False))
    amplitude = 10 ** draw(st.floats(-15, 3))
    seed = draw(st.integers(0, 2**16))
    data = amplitude * np.random.default_rng(seed).standard_normal((n_ch, n_times))
    info = mne.create_info(names, sfreq, "eeg")
    evoked = mne.EvokedArray(data, info, tmin=tmin, verbose=False)
    n_bad = draw(st.integers(0, min(5, n_ch)))
    evoked.info["bads"] = names[:n_bad]
    reference = draw(st.sampled_from(["none", "projection", "applied", "channel"]))
    if reference == "projection":
        evoked.set_eeg_reference("average", projection=True, verbose=False)
    elif reference == "applied":
        evoked.set_eeg_reference("average", verbose=False)
    elif reference == "channel":
        evoked.set_eeg_reference([names[-1]], verbose=False)
    return evoked


def _check_answer(evoked, **kwargs):
    """An stc with MNE's layout or a documented error; the input untouched."""
    data_before = evoked.data.copy()
    info_before = evoked.info.copy()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stc = apply_mmnet_inverse(evoked, FWD, device="cpu", verbose=False,
                                      **kwargs)  # fmt: skip
        for w in caught:  # the only warning: amplitudes outside the usual range
            assert "check the units" in str(w.message)
    except ValueError as exc:
        assert str(exc)  # a documented error with a message
    else:
        assert stc.data.shape == (994, len(evoked.times))
        assert np.isfinite(stc.data).all()
        assert np.isclose(stc.tmin, evoked.times[0])
        assert np.isclose(stc.tstep, 1 / evoked.info["sfreq"])
        assert [len(v) for v in stc.vertices] == [497, 497]
    np.testing.assert_array_equal(evoked.data, data_before)
    assert evoked.info["bads"] == info_before["bads"]
    assert len(evoked.info["projs"]) == len(info_before["projs"])
    assert evoked.info["ch_names"] == info_before["ch_names"]


@given(evokeds())
def test_any_user_evoked_gives_an_stc_or_a_clear_error(evoked):
    _check_answer(evoked, model=None, n_iter=1)


@settings(max_examples=max(3, settings().max_examples // 5))
@given(evokeds())
def test_the_shipped_default_model_answers_any_user_evoked(evoked):
    """The same contract through the learned solver (the model users get)."""
    _check_answer(evoked)
