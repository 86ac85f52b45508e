"""Tests of the MM-Net curvature model and the MMNet module."""

import numpy as np
import pytest
import torch

from mne_mmnet.networks.curvature import (
    ConvLSTMCell1d,
    CurvatureModel,
    count_parameters,
)
from mne_mmnet.networks.mmnet import MMNet
from mne_mmnet.solver import (
    curvature_bound,
    energy,
    initial_estimate,
    normalize_sources,
)

N_SOURCES, N_CHANNELS, N_TIMES = 30, 10, 12


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny problems run fastest (and reproducibly) on one thread."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)


def _problem(batch=3, n_times=N_TIMES, seed=0, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    L = rng.standard_normal((N_CHANNELS, N_SOURCES))
    L -= L.mean(axis=0)
    x_gt = np.zeros((batch, N_SOURCES, n_times))
    t = np.arange(n_times)
    for b in range(batch):
        start = rng.integers(0, N_SOURCES - 4)
        x_gt[b, start : start + 4] = np.exp(-0.5 * ((t - n_times / 2) / 2) ** 2)
    y = np.einsum("cs,bst->bct", L, x_gt)
    y += 0.05 * np.abs(y).max() * rng.standard_normal(y.shape)
    y -= y.mean(axis=1, keepdims=True)
    to = dict(dtype=dtype)
    return torch.tensor(y, **to), torch.tensor(L, **to), torch.tensor(x_gt, **to)


def _tiny_config(bound="analytic", n_iter=4, init_step=0.1, init_bound_ratio=0.5):
    curvature = dict(
        n_sources=N_SOURCES,
        embed=6,
        hidden=5,
        init_step=init_step,
        init_bound_ratio=init_bound_ratio,
    )
    return dict(
        prior=dict(n_sources=N_SOURCES, hidden=[8]),
        curvature=curvature,
        lam=1.0,
        gamma=1.999,
        bound=bound,
        n_iter=n_iter,
        step="diagonal",
        init="random",
    )


def test_convlstm_cell_state_and_length():
    """The cell is length agnostic and its state carries over calls."""
    torch.manual_seed(0)
    cell = ConvLSTMCell1d(3, 4, kernel_size=3)
    for n_times in (5, 17):
        inp = torch.randn(2, 3, n_times)
        state = cell.init_state(inp)
        assert state[0].shape == (2, 4, n_times)
        assert not state[0].any() and not state[1].any()
        h1, state = cell(inp, state)
        h2, state = cell(inp, state)
        assert h1.shape == (2, 4, n_times)
        # same input, different state -> different output: recurrence is used
        assert not torch.allclose(h1, h2)
    # gates convolve along time only: a local change leaves far samples alone
    inp = torch.randn(1, 3, 20)
    h_a, _ = cell(inp, cell.init_state(inp))
    inp_b = inp.clone()
    inp_b[..., 0] += 1.0
    h_b, _ = cell(inp_b, cell.init_state(inp))
    changed = (h_a - h_b).abs().amax(dim=1)[0] > 0
    assert changed[:2].all() and not changed[2:].any()  # kernel 3 -> radius 1
    with pytest.raises(ValueError, match="odd"):
        ConvLSTMCell1d(3, 4, kernel_size=2)


def test_curvature_model_scaling_and_default_step():
    """p_tilde is positive, scales like ||x||/||g||, and starts near init_step."""
    torch.manual_seed(0)
    model = CurvatureModel(N_SOURCES, embed=6, hidden=5, init_step=0.2).double()
    assert model.accepts_bound
    g = torch.randn(2, N_SOURCES, N_TIMES, dtype=torch.float64)
    x = torch.randn(2, N_SOURCES, N_TIMES, dtype=torch.float64)
    p, state = model(g, x, model.init_state(x))
    assert p.shape == x.shape and (p > 0).all()
    # scale covariance (inputs are normalised per sample): g -> a g, x -> b x
    a, b = 1e-4, 3e3
    p_scaled, _ = model(a * g, b * x, model.init_state(x))
    torch.testing.assert_close(p_scaled, (b / a) * p, rtol=1e-10, atol=0)
    # per-sample normalisation: scaling one sample leaves the other unchanged
    g2 = g.clone()
    g2[1] *= 1e6
    p2, _ = model(g2, x, model.init_state(x))
    torch.testing.assert_close(p2[0], p[0], rtol=1e-12, atol=0)
    # untrained model: steps within a factor 2 of init_step * ||x|| / ||g||
    ref = x.flatten(1).norm(dim=1) / g.flatten(1).norm(dim=1)
    ratio = p / ref[:, None, None]
    assert ((ratio > 0.1) & (ratio < 0.4)).all()
    # with the solver's bound: the same multipliers times init_bound_ratio * nu_up
    nu_up = torch.tensor([2.0, 5.0], dtype=torch.float64)
    p_bound, _ = model(g, x, model.init_state(x), nu_up=nu_up)
    expected = (
        p * (nu_up * model.config["init_bound_ratio"] / (0.2 * ref))[:, None, None]
    )
    torch.testing.assert_close(p_bound, expected, rtol=1e-10, atol=0)
    # the state moves: second call with the same inputs differs
    p_next, _ = model(g, x, state)
    assert not torch.allclose(p_next, p)
    with pytest.raises(ValueError, match="shape"):
        model(g[:, :-1], x, state)


def test_curvature_parameter_count():
    """Parameter count matches the layer arithmetic."""
    n, e, h, k = 994, 64, 64, 3

    def branch(n_in):
        return (n_in * e + e) + ((e + h) * 4 * h * k + 4 * h) + (h * n + n)

    model = CurvatureModel(n, embed=e, hidden=h, kernel_size=k)
    assert count_parameters(model) == branch(n) + branch(2 * n)


def test_initial_estimate_matches_minimum_norm():
    """The "mne" start is the Tikhonov minimum norm estimate (numpy reference)."""
    y, L, _ = _problem()
    x0 = initial_estimate(y, L, init="mne")
    Ln = L.numpy()
    gram = Ln @ Ln.T
    alpha = (1 / 9) * np.trace(gram) / np.linalg.matrix_rank(Ln)
    # push-through identity: L'(LL' + a I)^-1 = (L'L + a I)^-1 L'
    ridge = np.linalg.solve(Ln.T @ Ln + alpha * np.eye(Ln.shape[1]), Ln.T)
    expected = np.einsum("sc,bct->bst", ridge, y.numpy())
    np.testing.assert_allclose(x0.numpy(), expected, rtol=1e-7, atol=1e-12)
    x_rand = initial_estimate(y, L, init="random", seed=3)
    assert x_rand.shape == (y.shape[0], N_SOURCES, N_TIMES)
    assert 0.5e-3 < float(x_rand.std()) < 2e-3
    # seeded: same seed, same start; another seed, another start
    torch.testing.assert_close(x_rand, initial_estimate(y, L, init="random", seed=3))
    assert not torch.equal(x_rand, initial_estimate(y, L, init="random", seed=4))


def test_mmnet_config_roundtrip_and_length_agnostic():
    """from_config(config) rebuilds the same architecture and outputs."""
    torch.manual_seed(0)
    model = MMNet.from_config(_tiny_config()).double()
    config = model.config
    clone = MMNet.from_config(config).double()
    assert clone.config == config
    clone.load_state_dict(model.state_dict())
    for n_times in (12, 19):
        y, L, _ = _problem(n_times=n_times)
        out = model(y, L, seed=1)
        assert out.shape == (3, N_SOURCES, n_times)
        torch.testing.assert_close(clone(y, L, seed=1), out)
    with pytest.raises(ValueError, match="Unknown MMNet config"):
        MMNet.from_config({**config, "foo": 1})
    with pytest.raises(ValueError, match="gamma"):
        MMNet(gamma=2.5)


def _recorded_steps(bound):
    """Run MM-Net steps, recording the raw p_tilde, the bound and the update."""
    torch.manual_seed(0)
    # untrained steps around the bound, so that the projection is active
    config = _tiny_config(bound=bound, n_iter=1, init_step=0.025, init_bound_ratio=1)
    model = MMNet.from_config({**config, "safeguard": False}).double().eval()
    y, L, _ = _problem()
    raw = []
    curvature = model.curvature

    class Recorder(torch.nn.Module):
        accepts_bound = True

        def init_state(self, x):
            return curvature.init_state(x)

        def forward(self, g, x, state, **kwargs):
            p_tilde, state = curvature(g, x, state, **kwargs)
            raw.append(p_tilde.detach())
            return p_tilde, state

    model.curvature = Recorder()
    x = normalize_sources(model.initial_estimate(y, L, seed=0))
    rows = []
    for _ in range(3):
        x_req = x.detach().requires_grad_(True)
        u = energy(x_req, y, L, prior=model.prior, lam=model.lam).total
        (g,) = torch.autograd.grad(u.sum(), x_req)
        nu_up = curvature_bound(x, y, L, prior=model.prior, lam=model.lam).nu_up
        with torch.no_grad():
            x_next, _, _ = model.iterate(x, y, L)
        rows.append((x, x_next, raw[-1], nu_up.reshape(-1, 1, 1), g, model.gamma))
        x = x_next
    return rows


def _direction_error(a, b):
    """Distance between the unit vectors of each flattened sample."""
    a, b = a.flatten(1), b.flatten(1)
    return (a / a.norm(dim=1, keepdim=True) - b / b.norm(dim=1, keepdim=True)).norm(
        dim=1
    )


def test_projection_mm_net_vs_r_mm_net():
    """MM-Net steps with clip(p_tilde, nu_low, nu_up); R-MM-Net with p_tilde.

    The solver renormalises its iterates, so the step taken is identified by
    the direction of ``x_{i+1}``: it must be parallel to ``x - gamma p g``.
    """
    n_clipped = 0
    for x, x_next, raw, nu_up, g, gamma in _recorded_steps("analytic"):
        clipped = torch.minimum(torch.maximum(raw, 1e-6 * nu_up), nu_up)
        assert (_direction_error(x_next, x - gamma * clipped * g) < 1e-12).all()
        active = (raw > nu_up).flatten(1).any(dim=1)
        assert (_direction_error(x_next, x - gamma * raw * g)[active] > 1e-7).all()
        n_clipped += int(active.sum())
        assert (raw < nu_up).any()  # not everything is clipped
        # the solver passes nu_up: the untrained model predicts ~1 x nu_up
        assert ((raw / nu_up > 0.5) & (raw / nu_up < 2)).all()
    assert n_clipped > 0  # the projection was active
    n_above = 0
    for x, x_next, raw, nu_up, g, gamma in _recorded_steps(None):
        assert (_direction_error(x_next, x - gamma * raw * g) < 1e-12).all()
        n_above += int((raw > nu_up).sum())
    assert n_above > 0  # R-MM-Net took steps the bound would have clipped
