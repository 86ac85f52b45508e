"""The data's signal subspace (the gated start's denoising)."""

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, signal

from mne_mmnet.solver.subspace import (
    AR_ORDER,
    MAX_SOURCES,
    MIN_TIMES,
    _ar_coefficients,
    _threshold_factor,
    signal_subspace,
    subspace_scan,
)


def _marchenko_pastur_median(beta):
    """Median of the Marchenko-Pastur law of aspect ratio ``beta`` (variance 1)."""
    lo, hi = (1 - np.sqrt(beta)) ** 2, (1 + np.sqrt(beta)) ** 2

    def density(x):
        return np.sqrt(max((hi - x) * (x - lo), 0.0)) / (2 * np.pi * beta * x)

    def mass_below(m):
        return integrate.quad(density, lo, m)[0] - 0.5

    return optimize.brentq(mass_below, lo, hi)


@pytest.mark.parametrize("beta", [0.1, 0.35, 0.7, 1.0])
def test_threshold_factor_matches_gavish_donoho(beta):
    """omega(beta) = lambda*(beta) / sqrt(median of Marchenko-Pastur)."""
    lam = np.sqrt(
        2 * (beta + 1) + 8 * beta / (beta + 1 + np.sqrt(beta**2 + 14 * beta + 1))
    )
    exact = lam / np.sqrt(_marchenko_pastur_median(beta))
    assert _threshold_factor(beta) == pytest.approx(exact, abs=0.02)


def test_ar_coefficients_recover_a_known_process():
    """Yule-Walker on MNE's example colouring filter's AR(2) noise."""
    rng = np.random.default_rng(0)
    denominator = [0.2, -0.2, 0.04]  # y[t] = 5 e[t] + y[t-1] - 0.2 y[t-2]
    series = signal.lfilter([1.0], denominator, rng.standard_normal((40, 2000)))
    coef = _ar_coefficients(torch.as_tensor(series[None]), 2)[0].numpy()
    np.testing.assert_allclose(coef, [1.0, -0.2], atol=0.02)


def _low_rank_data(seed, *, rank, n_ch=40, n_times=200, noise=0.05, coloured=False):
    rng = np.random.default_rng(seed)
    patterns = np.linalg.qr(rng.standard_normal((n_ch, rank)))[0]
    t = np.linspace(0, 1, n_times)
    waves = np.stack(
        [np.exp(-0.5 * ((t - c) / 0.08) ** 2) for c in np.linspace(0.3, 0.7, rank)]
    )
    clean = patterns @ (waves * rng.uniform(1, 2, (rank, 1)))
    white = rng.standard_normal((n_ch, n_times))
    if coloured:
        white = signal.lfilter([1.0], [0.2, -0.2, 0.04], white) / 5
    y = clean + noise * np.linalg.norm(clean) / np.linalg.norm(white) * white
    return torch.as_tensor(y[None]), torch.as_tensor(clean)


@pytest.mark.parametrize("coloured", [False, True])
@pytest.mark.parametrize("rank", [1, 3])
def test_keeps_the_signal_patterns_and_removes_the_noise(rank, coloured):
    y, clean = _low_rank_data(rank, rank=rank, coloured=coloured)
    y_signal, kept = signal_subspace(y, return_rank=True)
    assert kept.tolist() == [rank]
    # most of the noise is gone: a projection onto the true patterns would
    # keep rank / n_channels of its power
    err = torch.linalg.norm(y_signal[0] - clean)
    raw = torch.linalg.norm(y[0] - clean)
    assert err < 0.5 * raw


def test_coloured_noise_without_whitening_would_keep_noise():
    """The threshold on the unwhitened data keeps noise components."""
    y, _ = _low_rank_data(5, rank=2, coloured=True, noise=0.3)
    sv = torch.linalg.svdvals(y[0])
    beta = min(y.shape[1:]) / max(y.shape[1:])
    unwhitened = int((sv > _threshold_factor(beta) * sv.median()).sum())
    assert unwhitened > 2
    assert signal_subspace(y, return_rank=True)[1].item() == 2


def test_is_odd_and_scale_equivariant_and_leaves_input():
    y, _ = _low_rank_data(3, rank=2)
    y = torch.cat([y, 2 * y.flip(-1)]).float()
    before = y.clone()
    out = signal_subspace(y)
    assert out.dtype == y.dtype and out.shape == y.shape
    torch.testing.assert_close(signal_subspace(-y), -out)
    torch.testing.assert_close(signal_subspace(1e-6 * y), 1e-6 * out)
    torch.testing.assert_close(y, before)


def test_short_epochs_are_returned_unchanged():
    y, _ = _low_rank_data(0, rank=1, n_times=MIN_TIMES + AR_ORDER - 1)
    out, kept = signal_subspace(y, return_rank=True)
    torch.testing.assert_close(out, y)
    assert out is not y
    # the scan then keeps one source, the MUSIC peak of the raw data
    L = torch.as_tensor(np.random.default_rng(0).standard_normal((40, 60)))
    assert int((subspace_scan(y, L).abs().sum(2) > 0).sum()) == 1
    with pytest.raises(ValueError, match="3-D"):
        signal_subspace(y[0])


def _dipole_problem(seed, *, n_sources_active, noise=0.01, n_ch=32, n_src=150):
    rng = np.random.default_rng(seed)
    L = rng.standard_normal((n_ch, n_src))
    active = rng.choice(n_src, n_sources_active, replace=False)
    t = np.linspace(0, 1, 120)
    x = np.zeros((n_src, t.size))
    for i, src in enumerate(active):
        centre = 0.3 + 0.4 * i / max(n_sources_active - 1, 1)
        x[src] = rng.choice([-1, 1]) * np.exp(-0.5 * ((t - centre) / 0.07) ** 2)
    clean = L @ x
    y = clean + noise * rng.standard_normal(clean.shape) * clean.std()
    return torch.as_tensor(y[None]), torch.as_tensor(L), active, torch.as_tensor(x)


@pytest.mark.parametrize("n_active", [1, 2, 3])
def test_scan_finds_the_dipoles_and_their_time_courses(n_active):
    y, L, active, x = _dipole_problem(n_active, n_sources_active=n_active)
    est, (y_signal, rank) = subspace_scan(y, L, return_subspace=True)
    want_signal, want_rank = signal_subspace(y, return_rank=True)
    torch.testing.assert_close(y_signal, want_signal)
    assert rank.tolist() == want_rank.tolist() == [n_active]
    est = est[0]
    found = torch.nonzero(est.abs().sum(1) > 0.05 * est.abs().sum(1).max())
    assert sorted(found[:, 0].tolist()) == sorted(active.tolist())
    err = torch.linalg.norm(est - x) / torch.linalg.norm(x)
    assert err < 0.05


def test_first_pick_is_the_music_peak():
    """With one pattern the scan's source maximises |u' l_j| / |l_j| (numpy)."""
    y, L, _, _ = _dipole_problem(7, n_sources_active=1, noise=0.3)
    y_signal, rank = signal_subspace(y, return_rank=True)
    assert rank.item() == 1
    u = np.linalg.svd(y_signal[0].numpy())[0][:, 0]
    Ln = L.numpy()
    music = np.abs(u @ Ln) / np.linalg.norm(Ln, axis=0)
    est = subspace_scan(y, L)[0]
    assert torch.nonzero(est.abs().sum(1)).flatten().tolist() == [music.argmax()]


def test_scan_is_odd_and_scale_equivariant_and_keeps_at_most_max_sources():
    y, L, _, _ = _dipole_problem(2, n_sources_active=3, noise=1.0)
    y = torch.cat([y, y.flip(-1)]).float()
    est = subspace_scan(y, L.float())
    assert est.dtype == torch.float32
    torch.testing.assert_close(subspace_scan(-y, L.float()), -est)
    torch.testing.assert_close(subspace_scan(1e3 * y, L.float()), 1e3 * est)
    assert ((est.abs().sum(2) > 0).sum(1) <= MAX_SOURCES).all()
    fewer = subspace_scan(y, L.float(), max_sources=1)
    assert ((fewer.abs().sum(2) > 0).sum(1) == 1).all()
