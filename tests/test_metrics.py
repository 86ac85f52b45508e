import numpy as np
import pytest
import torch
from scipy import sparse

from mne_mmnet.metrics import (
    auc,
    evaluate,
    localization_error,
    neighborhood,
    nmse,
    psnr,
    summarize,
    time_error,
)

N_SOURCES, N_TIMES, SFREQ = 30, 20, 500.0


def _chain():
    """Sources on a line, 1 cm apart, each linked to its two neighbours."""
    positions = np.zeros((N_SOURCES, 3))
    positions[:, 0] = 0.01 * np.arange(N_SOURCES)
    adjacency = sparse.diags_array(
        [np.ones(N_SOURCES - 1), np.ones(N_SOURCES - 1)], offsets=[-1, 1]
    ).tocsr()
    return positions, adjacency


def _patch_sources(n, rng):
    """Gaussian-in-time patches (seed +/- 2) at random seeds, zero elsewhere."""
    sources = np.zeros((n, N_SOURCES, N_TIMES))
    seeds = rng.integers(5, N_SOURCES - 5, n)
    wave = np.exp(-0.5 * ((np.arange(N_TIMES) - 10) / 2.0) ** 2)
    for i, s in enumerate(seeds):
        for d in range(-2, 3):
            sources[i, s + d] = np.exp(-(d**2) / 2) * wave
    return sources, seeds


def test_neighborhood_bfs():
    _, adjacency = _chain()
    mask = neighborhood(adjacency, 2)
    assert mask[10, 8:13].all() and mask[10].sum() == 5
    assert mask[0].sum() == 3
    assert np.array_equal(neighborhood(adjacency, 0), np.eye(N_SOURCES, dtype=bool))
    with pytest.raises(ValueError, match="order"):
        neighborhood(adjacency, -1)


def test_perfect_estimate():
    rng = np.random.default_rng(0)
    positions, adjacency = _chain()
    sources, seeds = _patch_sources(6, rng)
    scores = evaluate(
        2.0 * sources, sources, seeds=seeds, positions=positions,
        adjacency=adjacency, sfreq=SFREQ,
    )  # fmt: skip
    np.testing.assert_array_equal(scores["localization_error"], 0)
    np.testing.assert_array_equal(scores["auc"], 1)
    np.testing.assert_allclose(scores["nmse"], 0, atol=1e-30)
    np.testing.assert_array_equal(scores["time_error"], 0)
    assert np.all(np.isinf(scores["psnr"]))  # exact match: not capped
    assert np.all(psnr(2.5 * sources, sources) > 250)  # rounding only
    assert summarize(scores)["localization_error"] == 0


def test_shifted_estimate_exact_distance_and_time():
    rng = np.random.default_rng(1)
    positions, adjacency = _chain()
    sources, seeds = _patch_sources(4, rng)
    # move the whole patch by 2 sources (2 cm) and delay it by 3 samples
    shifted = np.roll(np.roll(sources, 2, axis=1), 3, axis=2)
    le = localization_error(
        shifted, sources, seeds=seeds, positions=positions, adjacency=adjacency,
        order=3,
    )  # fmt: skip
    np.testing.assert_allclose(le, 20.0)
    te = time_error(
        shifted, sources, seeds=seeds, adjacency=adjacency, sfreq=SFREQ, order=3
    )
    np.testing.assert_allclose(te, 3 / SFREQ * 1e3)
    # the peak is searched only inside the neighbourhood: order 1 cannot reach it
    le1 = localization_error(
        shifted, sources, seeds=seeds, positions=positions, adjacency=adjacency,
        order=1,
    )  # fmt: skip
    np.testing.assert_allclose(le1, 10.0)


def test_multiple_seeds_averaged():
    positions, adjacency = _chain()
    sources = np.zeros((1, N_SOURCES, N_TIMES))
    sources[0, 5, 4] = 1.0
    sources[0, 20, 10] = -2.0
    estimate = sources.copy()
    estimate[0, 6, 4] = 3.0  # first seed's peak 1 cm off; second exact
    seeds = np.array([[5, 20, -1]])
    le = localization_error(
        estimate, sources, seeds=seeds, positions=positions, adjacency=adjacency
    )
    np.testing.assert_allclose(le, [5.0])


def test_auc_matches_sklearn():
    roc_auc_score = pytest.importorskip("sklearn.metrics").roc_auc_score
    rng = np.random.default_rng(2)
    n = 7
    sources = rng.standard_normal((n, N_SOURCES, N_TIMES))
    sources *= rng.random((n, N_SOURCES, 1)) < 0.3  # some sources silent
    seeds = np.array([np.flatnonzero(s.any(axis=1))[0] for s in sources])
    estimate = rng.standard_normal((n, N_SOURCES, N_TIMES))
    estimate[:, :3] = estimate[:, 3:6]  # ties in the score
    got = auc(torch.from_numpy(estimate), sources, seeds=seeds)
    for i in range(n):
        t = np.abs(sources[i, seeds[i]]).argmax()
        want = roc_auc_score(sources[i, :, t] != 0, np.abs(estimate[i, :, t]))
        assert got[i] == pytest.approx(want, abs=1e-12)
    # an explicit activity mask is used as the labels
    active = rng.random((n, N_SOURCES)) < 0.5
    got = auc(estimate, sources, seeds=seeds, active=active)
    t = np.abs(sources[0, seeds[0]]).argmax()
    assert got[0] == pytest.approx(roc_auc_score(active[0], np.abs(estimate[0, :, t])))


def test_nmse_psnr_against_numpy():
    rng = np.random.default_rng(3)
    n = 5
    sources = rng.standard_normal((n, N_SOURCES, N_TIMES))
    estimate = rng.standard_normal((n, N_SOURCES, N_TIMES))
    seeds = np.stack([rng.integers(0, N_SOURCES, n), np.full(n, -1)], axis=1)
    seeds[0, 1] = 3  # a sample with two seeds
    got_nmse = nmse(estimate, sources, seeds=seeds)
    got_psnr = psnr(estimate.astype(np.float32), sources.astype(np.float32))
    for i in range(n):
        vals = []
        for s in seeds[i][seeds[i] >= 0]:
            t = np.argmax(np.abs(sources[i, s]))
            a = sources[i, :, t] / np.max(np.abs(sources[i, :, t]))
            b = estimate[i, :, t] / np.max(np.abs(estimate[i, :, t]))
            vals.append(np.mean((a - b) ** 2))
        assert got_nmse[i] == pytest.approx(np.mean(vals), rel=1e-12)
        a = sources[i] / np.abs(sources[i]).max()
        b = estimate[i] / np.abs(estimate[i]).max()
        assert got_psnr[i] == pytest.approx(10 * np.log10(1 / np.mean((a - b) ** 2)))


def test_source_estimate_input():
    mne = pytest.importorskip("mne")
    rng = np.random.default_rng(4)
    positions, adjacency = _chain()
    sources, seeds = _patch_sources(2, rng)
    vertices = [np.arange(N_SOURCES // 2), np.arange(N_SOURCES // 2)]
    stcs = [mne.SourceEstimate(s, vertices, tmin=0.0, tstep=1 / SFREQ) for s in sources]
    a = evaluate(
        stcs, sources, seeds=seeds, positions=positions, adjacency=adjacency,
        sfreq=SFREQ,
    )  # fmt: skip
    np.testing.assert_array_equal(a["localization_error"], 0)
    one = psnr(stcs[0], sources[:1])
    assert one.shape == (1,)


def test_validation_errors():
    positions, adjacency = _chain()
    x = np.zeros((2, N_SOURCES, N_TIMES))
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, x[:1])
    with pytest.raises(ValueError, match="n_samples, n_sources, n_times"):
        psnr(x[0], x[0])
    with pytest.raises(ValueError, match="at least one seed"):
        nmse(x, x, seeds=np.array([[1], [-1]]))
    with pytest.raises(ValueError, match=r"\[0, 30\)"):
        nmse(x, x, seeds=np.array([1, 30]))
    with pytest.raises(TypeError, match="integers"):
        nmse(x, x, seeds=np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="metres"):
        localization_error(
            x, x, seeds=[1, 2], positions=positions * 1e3, adjacency=adjacency
        )
    with pytest.raises(ValueError, match="sfreq"):
        time_error(x, x, seeds=[1, 2], adjacency=adjacency, sfreq=0.0)
    with pytest.raises(ValueError, match="boolean"):
        auc(x, x, seeds=[1, 2], active=np.ones((2, N_SOURCES)))


def test_score_simulation_is_evaluate_and_global_le_averaged():
    """The shortcut equals the two metric functions on the template, averaged."""
    from mne_mmnet.forward import read_template_adjacency, read_template_forward
    from mne_mmnet.metrics import (
        evaluate,
        global_localization_error,
        score_simulation,
        summarize,
    )
    from mne_mmnet.simulation import simulate_sereega

    fwd = read_template_forward(verbose=False)
    sim = simulate_sereega(6, seed=5, snr_db=5.0, fwd=fwd, verbose=False)
    rng = np.random.default_rng(0)
    estimate = sim.sources + 0.3 * rng.standard_normal(sim.sources.shape)
    scores = score_simulation(estimate, sim)
    expected = summarize(
        evaluate(
            estimate, sim.sources, seeds=sim.seeds, positions=fwd["source_rr"],
            adjacency=read_template_adjacency(), sfreq=sim.sfreq,
            active=sim.patch_masks,
        )
    )  # fmt: skip
    gle = global_localization_error(
        estimate, sim.sources, seeds=sim.seeds, positions=fwd["source_rr"]
    )
    assert scores == dict(expected, global_localization_error=float(gle.mean()))
