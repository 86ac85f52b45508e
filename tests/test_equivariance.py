"""Sign equivariance: inverting -evoked gives exactly -stc, by construction."""

import mne
import numpy as np
import pytest
import torch

from mne_mmnet import TEMPLATE_CH_NAMES, apply_mmnet_inverse, read_template_forward
from mne_mmnet.networks import CurvatureModel, MMNet, SoftReLUAutoencoder
from mne_mmnet.pretrained import shipped_models
from mne_mmnet.simulation import simulate_broad
from mne_mmnet.training import default_config


@pytest.fixture(scope="module")
def fwd():
    return read_template_forward(verbose=False)


@pytest.fixture(scope="module")
def evoked():
    sim = simulate_broad(1, seed=3, n_times=48, snr_db=10.0, verbose=False)
    info = mne.create_info(list(TEMPLATE_CH_NAMES), sim.sfreq, "eeg")
    ev = mne.EvokedArray(sim.eeg[0].astype(float), info, tmin=-0.02)
    return ev.set_eeg_reference("average", projection=True, verbose=False)


def _negated(evoked):
    neg = evoked.copy()
    neg.data *= -1
    return neg


def _assert_flips(stc, stc_neg):
    scale = np.abs(stc.data).max()
    assert scale > 0
    np.testing.assert_allclose(stc_neg.data, -stc.data, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("name", shipped_models())
def test_shipped_models_are_sign_equivariant(name, fwd, evoked):
    stc = apply_mmnet_inverse(evoked, fwd, model=name, device="cpu", verbose=False)
    stc_neg = apply_mmnet_inverse(
        _negated(evoked), fwd, model=name, device="cpu", verbose=False
    )
    _assert_flips(stc, stc_neg)


def _narrow_default():
    """The default configuration (start, metric, switches), a narrower prior."""
    config = default_config()
    config["prior"]["hidden"] = (128, 64)
    return config


@pytest.mark.parametrize("start", ["prior", "gated"])
def test_untrained_broad_architecture_is_sign_equivariant(start, fwd, evoked):
    """Any weights: the property comes from the architecture, not training."""
    config = _narrow_default()
    if start == "gated":  # the shipped default's start: a gate on both starts
        config.update(init="gated", gate=dict(hidden=(8, 8)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        net = MMNet.from_config(config)
        with torch.no_grad():  # move off the initialisation (biases included)
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
    stc = apply_mmnet_inverse(evoked, fwd, model=net, device="cpu", verbose=False)
    stc_neg = apply_mmnet_inverse(
        _negated(evoked), fwd, model=net, device="cpu", verbose=False
    )
    _assert_flips(stc, stc_neg)


def test_without_the_switches_the_sign_is_learned(fwd, evoked):
    """The same random networks without odd prior / invariant inputs differ."""
    config = _narrow_default()
    config["prior"]["odd"] = False
    config["curvature"]["sign_invariant"] = False
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        net = MMNet.from_config(config)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.2 * torch.randn_like(p))
    stc = apply_mmnet_inverse(evoked, fwd, model=net, device="cpu", verbose=False)
    stc_neg = apply_mmnet_inverse(
        _negated(evoked), fwd, model=net, device="cpu", verbose=False
    )
    diff = np.abs(stc_neg.data + stc.data).max() / np.abs(stc.data).max()
    assert diff > 1e-3


@pytest.mark.parametrize("mode", ["sign_invariant", "symmetrize"])
def test_curvature_step_is_sign_invariant(mode):
    gen = torch.Generator().manual_seed(0)
    model = CurvatureModel(20, embed=8, hidden=8, **{mode: True}).double()
    g = torch.randn(3, 20, 7, generator=gen, dtype=torch.float64)
    x = torch.randn(3, 20, 7, generator=gen, dtype=torch.float64)
    nu = torch.rand(3, dtype=torch.float64, generator=gen)
    s_pos, s_neg = model.init_state(x), model.init_state(x)
    for _ in range(3):  # the recurrent states stay in step
        p_pos, s_pos = model(g, x, s_pos, nu_up=nu)
        p_neg, s_neg = model(-g, -x, s_neg, nu_up=nu)
        torch.testing.assert_close(p_neg, p_pos, rtol=1e-12, atol=0)
        assert not torch.allclose(p_pos, p_pos.mean())  # not trivially constant


def test_odd_prior_energy_is_even():
    from mne_mmnet.solver import energy

    gen = torch.Generator().manual_seed(1)
    prior = SoftReLUAutoencoder(20, (6,), seed=0, odd=True).double()
    L = torch.randn(5, 20, generator=gen, dtype=torch.float64)
    x = torch.randn(2, 20, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(2, 5, 4, generator=gen, dtype=torch.float64)
    plus = energy(x, y, L, prior=prior)
    minus = energy(-x, -y, L, prior=prior)
    for a, b in zip(plus, minus):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
