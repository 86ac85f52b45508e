"""The broad simulator and training batches produce every listed variation."""

import numpy as np
import pytest
import torch

from mne_mmnet import read_template_forward
from mne_mmnet.simulation import simulate_broad
from mne_mmnet.simulation.broad import NOISES, WAVEFORMS


@pytest.fixture(scope="module")
def leadfield():
    return read_template_forward(verbose=False)["sol"]["data"]


def _noise_free(sim, leadfield):
    return np.einsum("cs,nst->nct", leadfield, sim.sources.astype(np.float64))


def test_every_variation_appears(leadfield):
    sim = simulate_broad(80, seed=0, sfreq=300.0, n_times=90, verbose=False)
    p = sim.sample_params
    signs = np.sign(p["amplitudes"][sim.seeds >= 0])
    assert {-1.0, 1.0} <= set(signs)  # either polarity
    n_patches = (sim.seeds >= 0).sum(1)
    assert set(n_patches) == {1, 2, 3}
    orders = p["orders"][sim.seeds >= 0]
    assert orders.min() == 0 and orders.max() == 5  # single region .. order 5
    assert set(p["waveform"][sim.seeds >= 0]) == set(range(len(WAVEFORMS)))
    assert set(p["noise"]) == set(range(len(NOISES)))
    assert p["snr_db"].min() < 3 and p["snr_db"].max() > 17
    assert sim.eeg.shape == (80, 90, 90) and sim.sfreq == 300.0
    # the SNR is what was asked for, whatever the noise kind
    clean = _noise_free(sim, leadfield)
    noise = sim.eeg - clean
    snr = 10 * np.log10((clean**2).sum((1, 2)) / (noise**2).sum((1, 2)))
    np.testing.assert_allclose(snr, p["snr_db"], atol=1e-3)


def test_polarity_and_baseline(leadfield):
    sim = simulate_broad(
        20, seed=1, polarity="negative", baseline=0.3, sfreq=256.0, n_times=256,
        snr_db=20.0, verbose=False,
    )  # fmt: skip
    peak = sim.sources[np.arange(20), sim.seeds[:, 0]]
    extreme = peak[np.arange(20), np.abs(peak).argmax(1)]
    gauss = sim.sample_params["waveform"][:, 0] == 0
    assert (extreme[gauss] < 0).all()  # Gaussian waveforms keep the patch sign
    onset = int(np.ceil(0.3 * 256))
    assert not sim.sources[:, :, : onset - 1].any()  # a silent baseline


def test_background_noise_is_spatially_correlated(leadfield):
    sim = simulate_broad(
        30, seed=2, noise="background", n_patches=1, snr_db=0.0, verbose=False
    )
    noise = sim.eeg - _noise_free(sim, leadfield)
    white = simulate_broad(30, seed=2, noise="white", snr_db=0.0, verbose=False)
    white_noise = white.eeg - _noise_free(white, leadfield)

    def mean_abs_channel_corr(n):
        c = np.array([np.corrcoef(x) for x in n])
        return np.abs(c[:, ~np.eye(90, dtype=bool)]).mean()

    assert mean_abs_channel_corr(noise) > 2 * mean_abs_channel_corr(white_noise)


def test_other_leadfield_generates_the_eeg(leadfield):
    kwargs = dict(seed=4)
    a = simulate_broad(5, snr_db=30.0, verbose=False, **kwargs)
    b = simulate_broad(5, snr_db=30.0, leadfield=2 * leadfield, verbose=False, **kwargs)
    np.testing.assert_array_equal(a.sources, b.sources)
    np.testing.assert_allclose(b.eeg, 2 * a.eeg, rtol=1e-5, atol=1e-12)
    with pytest.raises(ValueError, match="no EEG signal"):
        zero = leadfield.copy()
        zero[:] = 0
        simulate_broad(2, seed=0, leadfield=zero, verbose=False)


def test_training_batches_vary(monkeypatch, leadfield):
    """Sampling rate, window, baseline, head model and channels vary by batch."""
    from mne_mmnet.forward import variants
    from mne_mmnet.training import broad

    calls = []

    def fake_variant(**params):  # building real variants takes ~20 s each
        calls.append(params)
        return 1.5 * leadfield

    monkeypatch.setattr(variants, "make_variant_leadfield", fake_variant)
    infos = [broad.draw_batch(0, step, 2)["info"] for step in range(40)]
    sfreqs = [i["sfreq"] for i in infos]
    assert min(sfreqs) < 250 and max(sfreqs) > 600
    assert all(128 <= f <= 1000 for f in sfreqs)
    times = [i["n_times"] for i in infos]
    assert min(times) < 64 and max(times) > 150 and all(32 <= t <= 256 for t in times)
    assert any(i["baseline"] > 0 for i in infos) and any(
        i["baseline"] == 0 for i in infos
    )
    assert any(i["variant"] is not None for i in infos) and calls
    assert any(i["n_channels"] < 90 for i in infos)
    assert any(i["n_channels"] == 90 for i in infos)
    # reproducible; the inverse sees the template rows, average-referenced
    one, again = broad.draw_batch(0, 3, 2), broad.draw_batch(0, 3, 2)
    np.testing.assert_array_equal(one["y"].numpy(), again["y"].numpy())
    for t, dim in ((one["L"], 0), (one["y"], 1)):
        t = t.double().numpy()
        assert np.abs(t.sum(dim)).max() <= 1e-5 * np.abs(t).max()


def test_focal_batches_hold_only_small_patches():
    """sparse_prob draws batches of focal sources only; by default there are none."""
    from scipy import sparse

    from mne_mmnet.forward import read_template_adjacency
    from mne_mmnet.training import broad

    adjacency = sparse.csr_array(read_template_adjacency())
    no_variants = dict(variant_prob=0.0)
    focal = dict(no_variants, sparse_prob=1.0)
    orders = []
    for step in range(4):
        batch = broad.draw_batch(0, step, 6, ranges=focal)
        assert batch["info"]["orders"] == (0, 1)
        drawn = batch["sim"].sample_params["orders"]
        orders.extend(drawn[drawn >= 0].tolist())
        # every active source is a seed or one of its neighbours on the mesh
        sim = batch["sim"]
        for mask, seeds in zip(sim.patch_masks, sim.seeds):
            seeds = seeds[seeds >= 0]
            near = (adjacency[seeds].toarray() != 0).any(0)
            near[seeds] = True
            assert mask.any() and np.all(near[mask])
    assert set(orders) == {0, 1}
    # without it (the default) batches keep patches of every order
    plain = [broad.draw_batch(0, step, 6, ranges=no_variants) for step in range(4)]
    assert all(b["info"]["orders"] == (0, 5) for b in plain)
    drawn = np.concatenate([b["sim"].sample_params["orders"].ravel() for b in plain])
    assert drawn.max() >= 3


def test_neural_mass_batches_on_request():
    """nmm_prob draws batches from the neural-mass simulator at a rate it
    supports, on the template; without it the draws are those of before."""
    from mne_mmnet.training import broad

    ranges = dict(nmm_prob=1.0, n_times=(40, 40), sfreq=(300.0, 300.0))
    batch = broad.draw_batch(3, 0, 3, ranges=ranges)
    assert batch["info"]["orders"] == "nmm"
    assert batch["info"]["sfreq"] == 250.0  # the nearest of its rates (log scale)
    assert batch["info"]["variant"] is None
    assert batch["y"].shape[0] == 3 and batch["y"].shape[-1] == 40
    assert batch["sim"].sfreq == 250.0 and batch["sim"].sources.shape[-1] == 40
    assert np.isfinite(batch["y"].numpy()).all() and batch["x_gt"].abs().max() > 0
    # the share is a probability: about half of 20 batches
    half = dict(ranges, nmm_prob=0.5)
    kinds = [broad.draw_batch(3, k, 1, ranges=half)["info"] for k in range(20)]
    kinds = [info["orders"] for info in kinds]
    assert 4 <= kinds.count("nmm") <= 16
    before = broad.draw_batch(3, 0, 2, ranges=dict(variant_prob=0.0))
    zero = broad.draw_batch(3, 0, 2, ranges=dict(variant_prob=0.0, nmm_prob=0.0))
    assert torch.equal(before["y"], zero["y"])


def test_sphere_variant_builds_and_caches(tmp_path, monkeypatch, leadfield):
    import mne

    from mne_mmnet.forward.variants import make_variant_leadfield

    monkeypatch.setattr(mne, "get_config", lambda key, default=None: str(tmp_path))
    lf = make_variant_leadfield(sphere=True, verbose=False)
    assert lf.shape == leadfield.shape and np.all(np.any(lf != 0, axis=0))
    a, b = lf - lf.mean(0), leadfield - leadfield.mean(0)
    corr = (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))
    assert 0.9 < np.median(corr) < 0.999  # another head, the same sources
    assert list(tmp_path.rglob("variant-*.npz"))
    np.testing.assert_array_equal(make_variant_leadfield(sphere=True), lf)


def test_mne_dipoles_are_mnes_simulation_of_the_template():
    """The independent scenario: MNE's dipoles through MNE's forward, MNE's
    noise scaled to the SNR; seeds are the active sources, both signs occur,
    the same seed gives the same data."""
    import mne

    from mne_mmnet import read_template_forward
    from mne_mmnet.bench.generalisation import simulate_scenario
    from mne_mmnet.simulation import simulate_mne_dipoles

    fwd = read_template_forward(verbose=False)
    sim = simulate_mne_dipoles(12, seed=5, fwd=fwd, snr_db=3.0, verbose=False)
    assert sim.eeg.shape == (12, 90, 128) and sim.sfreq == 250.0
    counts = sim.sample_params["n_dipoles"]
    assert counts.min() >= 1 and counts.max() <= 3 and len(set(counts)) > 1
    active = np.abs(sim.sources).max(axis=2) > 0
    for k in range(12):
        seeds = sim.seeds[k][sim.seeds[k] >= 0]
        assert len(seeds) == counts[k]
        np.testing.assert_array_equal(np.flatnonzero(active[k]), np.sort(seeds))
        np.testing.assert_array_equal(sim.patch_masks[k], active[k])
    # the clean part is MNE's apply_forward of the sources; the rest is noise
    # at the asked SNR
    k = 0
    stc = mne.SourceEstimate(
        sim.sources[k].astype(float), [s["vertno"] for s in fwd["src"]], tmin=-0.1,
        tstep=1 / 250.0,
    )  # fmt: skip
    info = mne.create_info(fwd["info"]["ch_names"], 250.0, "eeg")
    clean = mne.apply_forward(fwd, stc, info, verbose=False).data
    noise = sim.eeg[k] - clean
    snr = 10 * np.log10((clean**2).sum() / (noise**2).sum())
    assert snr == pytest.approx(3.0, abs=1e-3)
    peaks = sim.sources[np.arange(12)[:, None], np.maximum(sim.seeds, 0)]
    signs = np.sign(peaks[np.abs(peaks).argmax(-1, keepdims=True) == np.arange(128)])
    assert {-1.0, 1.0} <= set(signs.tolist())
    again = simulate_mne_dipoles(12, seed=5, fwd=fwd, snr_db=3.0, verbose=False)
    np.testing.assert_array_equal(again.eeg, sim.eeg)
    sim2, fwd2 = simulate_scenario("mne-dipoles", 3, seed=0)
    assert sim2.meta["kind"] == "mne-dipoles" and fwd2["nchan"] == 90


def test_focal_scenario_holds_single_regions_of_either_sign():
    """The `focal` scenario: one active source per sample, both polarities."""
    from mne_mmnet.bench.generalisation import SCENARIOS, simulate_scenario

    # a scenario's test seed is its position: recorded rows stay valid only
    # while new scenarios are added at the end
    assert list(SCENARIOS)[:15] == [
        "paper", "negative", "two-patches", "three-patches", "snr-0", "snr-20",
        "epoch-256hz", "background", "spikes", "sphere-head", "conductivity",
        "32-channels", "mne-dipoles", "focal", "sereega-16",
    ]  # fmt: skip

    sim, fwd = simulate_scenario("focal", 16, seed=1)
    active = np.abs(sim.sources).max(axis=2) > 0
    assert np.all(active.sum(axis=1) == 1) and fwd["nchan"] == 90
    np.testing.assert_array_equal(np.flatnonzero(active[0]), sim.seeds[0, :1])
    assert set(np.sign(sim.sample_params["amplitudes"][:, 0]).tolist()) == {-1, 1}


def test_short_window_scenario_comes_from_the_sereega_simulator():
    """`sereega-16`: Table I SEREEGA samples of 16 time points on the template,
    the same for the same seed."""
    from mne_mmnet.bench.generalisation import simulate_scenario

    sim, fwd = simulate_scenario("sereega-16", 4, seed=2)
    again, _ = simulate_scenario("sereega-16", 4, seed=2)
    assert sim.meta["kind"] == "sereega" and sim.eeg.shape == (4, 90, 16)
    assert sim.sources.shape == (4, fwd["nsource"], 16) and fwd["nchan"] == 90
    np.testing.assert_array_equal(sim.eeg, again.eeg)
    assert sim.meta["scenario"] == "sereega-16"
