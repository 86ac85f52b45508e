"""Tests of the simulated data sets (SEREEGA-like, Jansen-Rit) and their I/O."""

import json
import os

import numpy as np
import pytest
import torch
from scipy import sparse
from scipy.signal import welch
from scipy.sparse.csgraph import connected_components

from mne_mmnet.forward import read_template_adjacency, read_template_forward
from mne_mmnet.simulation import (
    SimulationDataset,
    add_noise,
    generate_dataset,
    jansen_rit,
    load_simulation,
    measure_snr,
    save_simulation,
    simulate_nmm,
    simulate_sereega,
)


@pytest.fixture(scope="module")
def head():
    fwd = read_template_forward(verbose=False)
    adjacency = read_template_adjacency()
    return fwd, adjacency


def _within(adjacency, seed, order):
    """Regions within ``order`` hops of ``seed``, by sparse matrix powers."""
    step = sparse.csr_array(adjacency, dtype=np.int64) + sparse.eye_array(
        adjacency.shape[0], dtype=np.int64, format="csr"
    )
    reach = np.zeros(adjacency.shape[0], dtype=np.int64)
    reach[seed] = 1
    for _ in range(order):
        reach = np.minimum(step @ reach, 1)
    return reach > 0


def _clean_eeg(sim, fwd):
    return np.einsum("cs,nst->nct", fwd["sol"]["data"], sim.sources.astype(float))


def test_sereega_reproducible(head):
    fwd, adj = head
    a = simulate_sereega(20, seed=3, fwd=fwd, adjacency=adj, verbose=False)
    b = simulate_sereega(20, seed=3, fwd=fwd, adjacency=adj, verbose=False)
    c = simulate_sereega(20, seed=4, fwd=fwd, adjacency=adj, verbose=False)
    for name in ("sources", "eeg", "seeds", "patch_masks"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.seeds, c.seeds)
    assert not np.allclose(a.eeg, c.eeg)
    assert a.sources.dtype == a.eeg.dtype == np.float32
    assert a.sources.shape == (20, 994, 64) and a.eeg.shape == (20, 90, 64)
    assert a.seeds.shape == (20, 1) and a.seeds.dtype == np.int64
    assert a.sfreq == 512.0 and a.meta["kind"] == "sereega"


def test_sereega_patches(head):
    fwd, adj = head
    sim = simulate_sereega(40, seed=0, snr_db=None, fwd=fwd, adjacency=adj)
    pos = fwd["source_rr"]
    times = sim.times
    for i in range(len(sim)):
        seed, order = sim.seeds[i, 0], sim.sample_params["orders"][i, 0]
        mask = sim.patch_masks[i]
        # mask = seed's order-neighbourhood (independent reference), contiguous
        np.testing.assert_array_equal(mask, _within(adj, seed, order))
        assert connected_components(adj[mask][:, mask], directed=False)[0] == 1
        # nonzero sources exactly on the mask
        np.testing.assert_array_equal(np.any(sim.sources[i] != 0, axis=1), mask)
        # Gaussian spatial decay, edge at e^-2
        dist = np.linalg.norm(pos - pos[seed], axis=1)
        sd = dist[mask].max() / 2
        peak_row = sim.sources[i, seed].astype(float)
        amplitude = sim.sample_params["amplitudes"][i, 0] * 1e-9
        center = sim.sample_params["centers"][i, 0]
        sigma = sim.sample_params["widths"][i, 0] / 6
        waveform = amplitude * np.exp(-0.5 * ((times - center) / sigma) ** 2)
        np.testing.assert_allclose(peak_row, waveform, rtol=1e-5, atol=1e-15)
        spatial = np.exp(-(dist**2) / (2 * sd**2)) * mask
        expected = np.outer(spatial, waveform)
        np.testing.assert_allclose(sim.sources[i], expected, rtol=1e-5, atol=1e-15)
        ratio = spatial[mask].min()
        assert ratio == pytest.approx(np.exp(-2.0))
    # window scaling: peaks inside the middle half, widths 12-36 % of 125 ms
    assert np.all(sim.sample_params["centers"] >= 0.25 * 0.125 - 1e-12)
    assert np.all(sim.sample_params["centers"] <= 0.75 * 0.125 + 1e-12)
    assert set(np.unique(sim.sample_params["orders"])) <= {1, 2, 3, 4, 5}
    # noise-free EEG is the leadfield times the sources
    clean = _clean_eeg(sim, fwd)
    atol = 1e-5 * np.abs(clean).max()
    np.testing.assert_allclose(sim.eeg, clean, rtol=1e-4, atol=atol)


def test_sereega_several_patches(head):
    fwd, adj = head
    sim = simulate_sereega(30, seed=1, n_patches=(2, 3), fwd=fwd, adjacency=adj)
    counts = np.sum(sim.seeds >= 0, axis=1)
    assert counts.min() >= 2 and counts.max() <= 3
    grow = sparse.csr_array(adj, dtype=np.int64) + sparse.eye_array(994, format="csr")
    for i in range(len(sim)):
        masks = [
            _within(adj, s, o)
            for s, o in zip(sim.seeds[i], sim.sample_params["orders"][i])
            if s >= 0
        ]
        np.testing.assert_array_equal(np.any(masks, axis=0), sim.patch_masks[i])
        for a in range(len(masks)):
            touching = (grow @ masks[a].astype(np.int64)) > 0  # patch + 1 hop
            for b in range(a + 1, len(masks)):
                assert not np.any(touching & masks[b])  # >= 2 hops apart


@pytest.mark.parametrize("noise", ["white", "pink"])
def test_measured_snr(head, noise):
    fwd, adj = head
    sim = simulate_sereega(
        25, seed=2, snr_db=(-5, 20), noise=noise, fwd=fwd, adjacency=adj
    )
    measured = measure_snr(sim.eeg, _clean_eeg(sim, fwd))
    np.testing.assert_allclose(measured, sim.sample_params["snr_db"], atol=0.1)
    assert np.ptp(measured) > 10  # the range is really drawn per sample
    assert sim.meta["noise"] == noise


def test_add_noise_snr_and_spectrum():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((40, 16, 1024))
    for color, slope_expected in (("white", 0.0), ("pink", -1.0)):
        noisy = add_noise(signal, 3.0, color=color, seed=1)
        np.testing.assert_allclose(measure_snr(noisy, signal), 3.0, atol=1e-6)
        noise = (noisy - signal).reshape(-1, 1024)
        freqs, power = welch(noise, fs=1.0, nperseg=1024, axis=-1)
        keep = (freqs > 4 / 1024) & (freqs < 0.45)
        slope = np.polyfit(np.log(freqs[keep]), np.log(power.mean(0)[keep]), 1)[0]
        assert slope == pytest.approx(slope_expected, abs=0.1)
    same = add_noise(signal[0], 3.0, color="pink", seed=5)
    np.testing.assert_array_equal(same, add_noise(signal[0], 3.0, color="pink", seed=5))
    with pytest.raises(ValueError, match="all-zero"):
        add_noise(np.zeros((2, 3, 8)), 5.0, seed=0)
    with pytest.raises(ValueError, match="one value per sample"):
        add_noise(signal, [1.0, 2.0], seed=0)
    with pytest.raises(ValueError, match="color"):
        add_noise(signal, 1.0, color="blue", seed=0)


def _peak_frequency(output, sfreq=500.0):
    freqs, power = welch(output, fs=sfreq, nperseg=int(2 * sfreq), axis=-1)
    power = power.mean(0)
    keep = freqs >= 1.0
    return freqs[keep][np.argmax(power[keep])]


def test_jansen_rit_alpha():
    # Jansen & Rit's protocol: input uniform in 120-320 pulses/s, redrawn every
    # millisecond = white noise of std 57.7 * sqrt(1 ms) around 220
    sigma = (200 / np.sqrt(12)) * np.sqrt(1e-3)
    out = jansen_rit(6, 8.0, input_mean=220.0, input_noise=sigma, seed=0)
    assert out.shape == (6, 4000)
    alpha = _peak_frequency(out)
    assert 8.0 <= alpha <= 12.0, alpha
    for rate in (150.0, 300.0):  # constant rates across the range
        out = jansen_rit(4, 6.0, input_mean=rate, input_noise=0.5, seed=1)
        assert 8.0 <= _peak_frequency(out) <= 12.0
    # control: the raised gain at low input spikes slowly, no alpha
    spikes = jansen_rit(4, 6.0, A=3.6, input_mean=90.0, seed=2)
    assert _peak_frequency(spikes) < 6.0


def test_jansen_rit_backends_and_step():
    kwargs = dict(input_noise=0.0, transient=0.2, sfreq=500.0)
    ref = jansen_rit(3, 0.5, **kwargs)
    torch_out = jansen_rit(3, 0.5, backend="torch", device="cpu", **kwargs)
    np.testing.assert_allclose(torch_out, ref, rtol=1e-9, atol=1e-9)
    # deterministic Heun is second order: halving dt changes little
    fine = jansen_rit(3, 0.5, dt=2.5e-4, **kwargs)
    assert np.max(np.abs(fine - ref)) < 1e-2 * np.ptp(ref)
    noisy = jansen_rit(3, 0.5, seed=4)
    np.testing.assert_array_equal(noisy, jansen_rit(3, 0.5, seed=4))
    assert not np.array_equal(noisy, jansen_rit(3, 0.5, seed=5))
    with pytest.raises(ValueError, match="integer"):
        jansen_rit(2, 0.1, sfreq=300.0)
    with pytest.raises(ValueError, match="Unknown"):
        jansen_rit(2, 0.1, params=dict(D=1.0))


def test_simulate_nmm(head):
    fwd, adj = head
    identity = dict(sol=dict(data=np.eye(994)), source_rr=fwd["source_rr"])
    sim = simulate_nmm(3, seed=0, snr_db=None, fwd=identity, adjacency=adj)
    assert sim.sources.shape == (3, 994, 500) and sim.sfreq == 500.0
    assert sim.eeg.shape == (3, 994, 500)
    background = sim.eeg.astype(float) - sim.sources
    for i in range(3):
        seed, mask = sim.seeds[i, 0], sim.patch_masks[i]
        np.testing.assert_array_equal(
            mask, _within(adj, seed, sim.sample_params["orders"][i, 0])
        )
        np.testing.assert_array_equal(np.any(sim.sources[i] != 0, axis=1), mask)
        spike = sim.sources[i, seed].astype(float)
        # the largest spike sits at the window centre, with the drawn amplitude
        assert np.argmax(np.abs(spike)) == 250 == sim.sample_params["spike_samples"][i]
        amplitude = sim.sample_params["amplitudes"][i, 0]
        assert np.max(np.abs(spike)) == pytest.approx(amplitude * 1e-9, rel=1e-5)
        assert 5 <= amplitude <= 15
        # background outside the patch only, spike 15 dB over it
        assert np.all(background[i, mask] == pytest.approx(0.0, abs=1e-15))
        bg_power = np.mean(background[i, ~mask] ** 2)
        ratio = 10 * np.log10(np.mean(spike**2) / bg_power)
        assert ratio == pytest.approx(15.0, abs=0.05)
    # with the real leadfield and sensor noise; batches have their own random
    # streams, so a parallel run gives the same data
    kwargs = dict(seed=0, snr_db=5.0, noise="pink", batch_size=1)
    real = simulate_nmm(2, fwd=fwd, adjacency=adj, **kwargs)
    assert real.eeg.shape == (2, 90, 500) and real.eeg.dtype == np.float32
    again = simulate_nmm(2, fwd=fwd, adjacency=adj, n_jobs=2, **kwargs)
    np.testing.assert_array_equal(real.eeg, again.eeg)
    np.testing.assert_array_equal(real.sources, again.sources)
    other = simulate_nmm(1, fwd=fwd, adjacency=adj, **dict(kwargs, seed=1))
    assert not np.allclose(other.eeg[0], real.eeg[0])


def test_save_load_dataset(head, tmp_path):
    fwd, adj = head
    sim = simulate_sereega(25, seed=0, fwd=fwd, adjacency=adj)
    save_simulation(sim, tmp_path / "sim", shard_size=10)
    assert sorted(p.name for p in (tmp_path / "sim").iterdir()) == [
        "manifest.json",
        "shard-00000.npz",
        "shard-00001.npz",
        "shard-00002.npz",
    ]
    loaded = load_simulation(tmp_path / "sim")
    for name in ("sources", "eeg", "seeds", "patch_masks"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(sim, name))
    for name, value in sim.sample_params.items():
        np.testing.assert_array_equal(loaded.sample_params[name], value)
    order = [21, 3, 14, 3, -1]
    part = load_simulation(tmp_path / "sim", indices=order)
    np.testing.assert_array_equal(part.eeg, sim.eeg[order])
    np.testing.assert_array_equal(part.sources, sim.sources[order])
    dataset = SimulationDataset(tmp_path / "sim", max_cached_shards=1)
    assert len(dataset) == 25
    for index in (24, 0, 13):
        eeg, sources = dataset[index]
        assert eeg.dtype == sources.dtype == torch.float32
        np.testing.assert_array_equal(eeg.numpy(), sim.eeg[index])
        np.testing.assert_array_equal(sources.numpy(), sim.sources[index])
    loader = torch.utils.data.DataLoader(dataset, batch_size=8)
    eeg, sources = next(iter(loader))
    assert eeg.shape == (8, 90, 64) and sources.shape == (8, 994, 64)
    with pytest.raises(FileExistsError):
        save_simulation(sim, tmp_path / "sim")
    with pytest.raises(ValueError, match="out of range|must be in"):
        load_simulation(tmp_path / "sim", indices=[25])


def test_generate_resume(head, tmp_path):
    fwd, adj = head
    kwargs = dict(shard_size=10, seed=7, fwd=fwd, adjacency=adj, snr_db=10.0)
    out = tmp_path / "gen"
    manifest = generate_dataset(out, "sereega", 35, **kwargs)
    assert manifest["regenerated"] == [0, 1, 2, 3]
    assert [e["n"] for e in manifest["shards"]] == [10, 10, 10, 5]
    on_disk = json.loads((out / "manifest.json").read_text())
    import hashlib

    for entry in on_disk["shards"]:
        digest = hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest()
        assert digest == entry["sha256"]
    assert len({e["seed"] for e in on_disk["shards"]}) == 4
    # byte-identical in another directory
    twin = generate_dataset(tmp_path / "twin", "sereega", 35, **kwargs)
    assert [e["sha256"] for e in twin["shards"]] == [
        e["sha256"] for e in on_disk["shards"]
    ]
    # a shard equals simulate_sereega with its recorded seed
    first = simulate_sereega(
        10,
        seed=on_disk["shards"][1]["seed"],
        **{k: v for k, v in kwargs.items() if k not in ("shard_size", "seed")},
    )
    np.testing.assert_array_equal(
        load_simulation(out, indices=np.arange(10, 20)).eeg, first.eeg
    )
    # nothing to do on a complete directory
    assert generate_dataset(out, "sereega", 35, **kwargs)["regenerated"] == []
    # delete one shard and corrupt another: only these are rewritten
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.npz")}
    os.remove(out / "shard-00001.npz")
    with open(out / "shard-00003.npz", "r+b") as fid:
        fid.seek(200)
        fid.write(b"corrupt")
    with pytest.raises(ValueError, match="sha256"):
        load_simulation(out, indices=[31])
    manifest = generate_dataset(out, "sereega", 35, **kwargs)
    assert manifest["regenerated"] == [1, 3]
    for name in ("shard-00000.npz", "shard-00002.npz"):
        assert (out / name).stat().st_mtime_ns == mtimes[name]
    assert [e["sha256"] for e in manifest["shards"]] == [
        e["sha256"] for e in on_disk["shards"]
    ]
    assert len(load_simulation(out)) == 35
    assert not list(out.glob(".*tmp"))
    # other parameters in the same directory are refused
    with pytest.raises(ValueError, match="other parameters"):
        generate_dataset(out, "sereega", 35, **dict(kwargs, snr_db=0.0))


def test_cli_simulate(tmp_path, capsys):
    from mne_mmnet.cli import main

    out = tmp_path / "cli"
    argv = ["simulate", "--kind", "sereega", "--n", "12", "--snr", "0,10"]
    argv += ["--noise", "pink", "--seed", "2", "--shard-size", "5", "--out", str(out)]
    assert main(argv) == 0
    assert "12 sereega samples in 3 shard(s)" in capsys.readouterr().out
    sim = load_simulation(out)
    assert len(sim) == 12 and sim.meta["noise"] == "pink"
    assert np.all(
        (sim.sample_params["snr_db"] >= 0) & (sim.sample_params["snr_db"] <= 10)
    )
    assert main(argv + ["--quiet"]) == 0  # resumes: nothing left to do
    assert json.loads((out / "manifest.json").read_text())["seed"] == 2
    # neural mass on the torch backend, one sample
    argv = ["simulate", "--kind", "nmm", "--n", "1", "--backend", "torch"]
    argv += ["--dtype", "float32", "--out", str(tmp_path / "nmm"), "--quiet"]
    assert main(argv) == 0
    sim = load_simulation(tmp_path / "nmm")
    assert sim.eeg.shape == (1, 90, 500) and sim.meta["backend"] == "torch"
    with pytest.raises(SystemExit, match="only applies"):
        main(["simulate", "--n", "1", "--n-jobs", "2", "--out", str(tmp_path / "x")])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=0), "positive"),
        (dict(orders=(3, 1)), "orders"),
        (dict(n_patches=0), "n_patches"),
        (dict(noise="brown"), "noise|color"),
        (dict(width_range=(0.0, 0.1)), "positive"),
    ],
)
def test_sereega_errors(head, kwargs, match):
    fwd, adj = head
    kwargs = dict(dict(n=2, fwd=fwd, adjacency=adj), **kwargs)
    with pytest.raises(ValueError, match=match):
        simulate_sereega(kwargs.pop("n"), **kwargs)


def test_head_model_mismatch(head):
    fwd, adj = head
    with pytest.raises(ValueError, match="adjacency must have shape"):
        simulate_sereega(2, fwd=fwd, adjacency=adj[:10, :10])
