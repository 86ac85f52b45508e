"""make_cap_forward: the user's own EEG cap (BioSemi, EGI) on the template head."""

import copy
import re
import time

import mne
import numpy as np
import pytest
import torch
from mne.utils import catch_logging

from mne_mmnet import (
    apply_mmnet_inverse,
    apply_mmnet_inverse_epochs,
    make_cap_forward,
    make_mmnet_inverse,
    read_template_forward,
)
from mne_mmnet.forward import caps
from mne_mmnet.metrics import global_localization_error
from mne_mmnet.simulation import simulate_broad
from mne_mmnet.solver import initial_estimate

pytest.importorskip("nilearn")  # the fsaverage5 meshes

#: BioSemi's own names, in the order of MNE's biosemi64 montage
BIOSEMI_NAMES = [f"{bank}{k}" for bank in "AB" for k in range(1, 33)]
CAPS = ("biosemi64", "egi128")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Every build of this module goes to one temporary cache."""
    path = tmp_path_factory.mktemp("caps")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(caps, "_cache_dir", lambda: path)
        yield path


def _cap_info(name):
    if name == "biosemi64":
        montage = mne.channels.make_standard_montage("biosemi64")
        montage.rename_channels(dict(zip(montage.ch_names, BIOSEMI_NAMES)))
        sfreq = 512.0
    else:  # the 128 EEG electrodes (fiducials go to the digitisation)
        montage = mne.channels.make_standard_montage("GSN-HydroCel-128")
        sfreq = 500.0
    info = mne.create_info(montage.ch_names, sfreq, "eeg")
    info.set_montage(montage)
    return info


def _build(name):
    info = _cap_info(name)
    start = time.perf_counter()
    with catch_logging() as log:
        fwd = make_cap_forward(info, ico=3, verbose=True)
    return dict(info=info, fwd=fwd, seconds=time.perf_counter() - start,
                log=log.getvalue())  # fmt: skip


@pytest.fixture(scope="module")
def built(cache):
    """Each cap built once (BioSemi first: it solves the BEM, EGI reuses it)."""
    return {name: _build(name) for name in CAPS}


def _epochs(cap, n, seed):
    sim = simulate_broad(n, seed=seed, leadfield=cap["fwd"]["sol"]["data"],
                         sfreq=cap["info"]["sfreq"], verbose=False)  # fmt: skip
    epochs = mne.EpochsArray(sim.eeg.astype(float), cap["info"], verbose=False)
    return epochs.set_eeg_reference(projection=True, verbose=False), sim


def test_cap_forward_has_the_template_layout(built, cache):
    template = read_template_forward()
    for name, cap in built.items():
        fwd = cap["fwd"]
        assert fwd["sol"]["row_names"] == cap["info"]["ch_names"], name
        assert fwd["sol"]["data"].shape == (len(cap["info"]["ch_names"]), 994)
        assert fwd["sol"]["data"].dtype == np.float64
        assert np.isfinite(fwd["sol"]["data"]).all()
        assert np.all(np.any(fwd["sol"]["data"] != 0, axis=0))
        assert fwd["src"]._subject == "fsaverage" and fwd["surf_ori"]
        assert fwd["source_ori"] == template["source_ori"]
        for new, old in zip(fwd["src"], template["src"]):
            np.testing.assert_array_equal(new["vertno"], old["vertno"])
        np.testing.assert_allclose(fwd["source_rr"], template["source_rr"])
    # the BEM is solved once, for the first cap; the second reads it
    assert "Solved the ico-3 BEM" in built["biosemi64"]["log"]
    assert "Using the cached ico-3 BEM solution" in built["egi128"]["log"]
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 3 and files[0] == "bem-ico3-v1-sol.npy", files
    assert all(re.fullmatch(r"cap-[0-9a-f]{16}-fwd\.fif", f) for f in files[1:])


@pytest.mark.parametrize("name", CAPS)
def test_template_forward_refused_cap_forward_inverts(built, name):
    """The template's error names the fix, and the fix works end to end."""
    cap = built[name]
    evoked = _epochs(cap, 2, seed=1)[0].average()
    with pytest.raises(ValueError, match=r"make_cap_forward\(inst\.info\)"):
        apply_mmnet_inverse(evoked, read_template_forward(), model="broad")
    stc = apply_mmnet_inverse(evoked, cap["fwd"], model="broad")
    template = read_template_forward()
    assert stc.data.shape == (994, len(evoked.times)) and stc.subject == "fsaverage"
    assert np.isfinite(stc.data).all() and np.abs(stc.data).max() > 0
    for v, s in zip(stc.vertices, template["src"]):
        np.testing.assert_array_equal(v, s["vertno"])


def _mean_global_le(cap, n=40, seed=0):
    """Mean global LE (mm) of the default MM-Net and of sLORETA on one cap."""
    epochs, sim = _epochs(cap, n, seed)
    inv = make_mmnet_inverse(epochs.info, cap["fwd"])  # the default model
    x_mmnet = np.stack([s.data for s in apply_mmnet_inverse_epochs(epochs, inv)])
    gain = cap["fwd"]["sol"]["data"]
    y = torch.as_tensor(sim.eeg, dtype=torch.float64)
    x_sloreta = initial_estimate(
        y - y.mean(1, keepdim=True), torch.as_tensor(gain - gain.mean(0)),
        init="sloreta",
    ).numpy()  # fmt: skip
    rr = read_template_forward()["source_rr"]
    return [
        global_localization_error(x, sim.sources, seeds=sim.seeds, positions=rr).mean()
        for x in (x_mmnet, x_sloreta)
    ]


@pytest.mark.parametrize("name", CAPS)
def test_mmnet_localises_at_least_as_well_as_sloreta(built, name, one_torch_thread):
    # measured (40 samples, seed 0): BioSemi-64 26.4 vs 27.1 mm, EGI-128 22.2
    # vs 24.7 mm
    le_mmnet, le_sloreta = _mean_global_le(built[name])
    assert le_mmnet <= le_sloreta, (name, le_mmnet, le_sloreta)


def test_input_untouched_and_bad_inputs(built):
    cap = built["biosemi64"]
    info = mne.create_info([*BIOSEMI_NAMES, "STI"], 512.0, ["eeg"] * 64 + ["stim"])
    info.set_montage(cap["info"].get_montage())
    info["bads"] = ["A7"]
    before = copy.deepcopy(info)
    evoked = mne.EvokedArray(np.zeros((65, 4)), info)
    for inst in (info, evoked):  # the same cap: read from the cache
        fwd = make_cap_forward(inst, ico=3)
        # every EEG channel, the bad one too, in info order; no stim row
        assert fwd["sol"]["row_names"] == BIOSEMI_NAMES
        np.testing.assert_array_equal(fwd["sol"]["data"], cap["fwd"]["sol"]["data"])
    assert info["ch_names"] == before["ch_names"] and info["bads"] == ["A7"]
    for ch, ch0 in zip(info["chs"], before["chs"]):
        np.testing.assert_array_equal(ch["loc"], ch0["loc"])
    no_pos = mne.create_info(BIOSEMI_NAMES, 512.0, "eeg")
    with pytest.raises(ValueError, match=r"64 of the 64 EEG.*no electrode position.*"
                       r"set_montage"):  # fmt: skip
        make_cap_forward(no_pos)
    partial = cap["info"].copy()
    partial["chs"][5]["loc"][:3] = np.nan
    with pytest.raises(ValueError, match="1 of the 64 .*: A6. Set the cap's montage"):
        make_cap_forward(partial)
    with pytest.raises(ValueError, match=r"no EEG channels.*\['misc'\]"):
        make_cap_forward(mne.create_info(3, 512.0, "misc"))
    millimetres = cap["info"].copy()
    for ch in millimetres["chs"]:
        ch["loc"][:3] *= 1e3
    with pytest.raises(ValueError, match="in metres in the head frame"):
        make_cap_forward(millimetres)
    with pytest.raises(ValueError, match="ico must be 3 or 4"):
        make_cap_forward(info, ico=5)
    with pytest.raises(TypeError, match="ico"):
        make_cap_forward(info, ico="4")
    with pytest.raises(TypeError, match="mne.Info, Evoked, Epochs or Raw"):
        make_cap_forward(np.zeros(3))


def test_cached_call_is_fast_and_identical(built, cache):
    cap = built["egi128"]
    start = time.perf_counter()
    with catch_logging() as log:
        again = make_cap_forward(cap["info"], ico=3, verbose=True)
    elapsed = time.perf_counter() - start
    assert "Read the cached forward" in log.getvalue()
    assert elapsed < 2.0 and elapsed < cap["seconds"] / 5, (elapsed, cap["seconds"])
    np.testing.assert_array_equal(again["sol"]["data"], cap["fwd"]["sol"]["data"])
    # the key holds the positions rounded to 0.1 mm: 1 um is the same cap
    names = cap["info"]["ch_names"]
    pos = np.array([ch["loc"][:3] for ch in cap["info"]["chs"]])
    key = caps._cap_key(3, names, pos)
    assert caps._cap_key(3, names, np.round(pos, 4) + 1e-6) == key
    assert caps._cap_key(3, names, pos + np.r_[1e-3, 0, 0]) != key
    assert caps._cap_key(4, names, pos) != key
    # rebuilt with the cached BEM solution: the same numbers as the solved one
    fname = cache / f"cap-{key}-fwd.fif"
    assert fname.is_file()
    fname.unlink()
    rebuilt = make_cap_forward(cap["info"], ico=3)
    np.testing.assert_array_equal(rebuilt["sol"]["data"], cap["fwd"]["sol"]["data"])
    assert not list(cache.glob(".tmp-*"))  # atomic writes leave nothing behind


@pytest.mark.slow
def test_template_channels_reproduce_the_shipped_forward(tmp_path, monkeypatch):
    """The template's own 90 channels give the shipped forward (ico-4, ~3 min)."""
    from mne_mmnet.forward._build import _info

    monkeypatch.setattr(caps, "_cache_dir", lambda: tmp_path)
    shipped = read_template_forward()
    fwd = make_cap_forward(_info(), ico=4)  # solves the ico-4 BEM
    assert fwd["sol"]["row_names"] == shipped["sol"]["row_names"]
    np.testing.assert_allclose(fwd["sol"]["data"], shipped["sol"]["data"], rtol=1e-6)
    next(tmp_path.glob("cap-*-fwd.fif")).unlink()
    again = make_cap_forward(_info(), ico=4)  # with the cached BEM solution
    np.testing.assert_array_equal(again["sol"]["data"], fwd["sol"]["data"])


def test_vertices_outside_the_inner_skull_are_refused(monkeypatch):
    """A head whose inner skull leaves out vertices (here: faked) is refused."""
    from mne_mmnet.forward import _build
    from mne_mmnet.forward.template import _load_regions

    regions = _load_regions()
    lh, rh = regions["vertex_region_lh"], regions["vertex_region_rh"]
    gone = np.r_[np.flatnonzero(lh == 7), np.flatnonzero(lh == 8)[:1]]
    kept = np.setdiff1d(np.arange(len(lh)), gone)
    fake = dict(src=[dict(vertno=kept), dict(vertno=np.arange(len(rh)))])
    monkeypatch.setattr(mne, "setup_source_space", lambda *a, **k: None)
    monkeypatch.setattr(mne, "make_forward_solution", lambda *a, **k: fake)
    match = rf"^{len(gone)} white-surface vertices fell outside the inner skull \(1 "
    with pytest.raises(RuntimeError, match=match):
        _build._region_forward(None, None, None, (lh, rh), (None, None))
