"""Projected MM solver: descent, projection, differentiability, localisation."""

from types import SimpleNamespace

import mne
import numpy as np
import pytest
import torch

from mne_mmnet.networks import SoftReLUAutoencoder
from mne_mmnet.solver import (
    cosine_similarity,
    curvature_bound,
    energy,
    linear_inverse_kernel,
    mm_iterations,
    normalize_sources,
    solve_mm,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small batched problems run faster on one thread of a shared machine."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)


@pytest.fixture(scope="module")
def template():
    from mne_mmnet.forward import read_template_forward

    fwd = read_template_forward(verbose=False)
    L = fwd["sol"]["data"]
    return fwd, L - L.mean(0), fwd["source_rr"]


class _ConstantCurvature:
    """Learned-curvature stand-in: ``p_tilde = value`` everywhere."""

    def __init__(self, value):
        self.value = value

    def init_state(self, x):
        return 0

    def __call__(self, g, x, state):
        return self.value * torch.ones_like(g), state + 1


def _run(x0, y, L, prior=None, **kwargs):
    opts = dict(
        curvature=None,
        n_iter=10,
        gamma=1.999,
        bound="analytic",
        step="diagonal",
        lam=1.0,
    )
    opts.update(kwargs)
    return mm_iterations(x0, y, L, prior=prior, **opts)


def _check_descent(trace):
    assert torch.isfinite(trace.total).all()
    assert (trace.total.diff(dim=0) <= 0).all()


def test_descent_on_1000_random_problems(template):
    """Energy never increases; the analytic bound alone already descends."""
    gen = torch.Generator().manual_seed(0)
    fired = []
    for k, n_times in enumerate((1, 4, 9, 16)):  # 4 x 125 random leadfields
        L = torch.randn(20, 60, generator=gen, dtype=torch.float64)
        prior = None
        if k % 2:
            prior = SoftReLUAutoencoder(60, (12,), eps=0.2, seed=k).double()
        x0 = 1e-3 * torch.randn(125, 60, n_times, generator=gen, dtype=torch.float64)
        y = torch.randn(125, 20, n_times, generator=gen, dtype=torch.float64)
        x, trace = _run(x0, y, L, prior)
        _check_descent(trace)
        fired.append(trace.safeguard)
        torch.testing.assert_close(trace.total[-1], energy(x, y, L, prior=prior).total)
        # MM guarantee of the certified bound: no increase even unguarded
        _, unguarded = _run(x0, y, L, prior, safeguard=False)
        _check_descent(unguarded)
    _, L, _ = template
    L = torch.from_numpy(L).float()
    for prior in (None, SoftReLUAutoencoder(994, (16,), eps=0.2, seed=0)):
        x0 = 1e-3 * torch.randn(250, 994, 8, generator=gen)
        y = torch.randn(250, 90, 8, generator=gen)
        y = y - y.mean(1, keepdim=True)
        x, trace = _run(x0, y, L, prior)
        _check_descent(trace)
        fired.append(trace.safeguard)
    # measured: the safeguard never fired with the analytic bound
    assert torch.cat(fired, 1).float().mean() <= 0.01


@pytest.mark.parametrize(
    "bound,step", [("hvp", "diagonal"), ("analytic", "directional")]
)
def test_descent_other_steps(bound, step):
    gen = torch.Generator().manual_seed(1)
    L = torch.randn(15, 40, generator=gen)
    prior = SoftReLUAutoencoder(40, (8,), eps=0.2, seed=1)
    x0 = torch.randn(20, 40, 6, generator=gen)
    y = torch.randn(20, 15, 6, generator=gen)
    _, trace = _run(x0, y, L, prior, bound=bound, step=step, gamma=1.999)
    _check_descent(trace)
    assert trace.total[-1].mean() < trace.total[0].mean()


@pytest.mark.parametrize("odd,lam", [(True, 0.7), (False, 0.7), (True, 0.0)])
def test_forward_curvature_is_the_exact_hessian_form(odd, lam):
    """d'Hd in forward mode equals the exact Hessian's quadratic form (small
    problem, autograd's full Hessian), at any scale of x; its prior tangents
    are those of a first-order expansion along the unit-RMS curve."""
    from mne_mmnet.solver.directional import curvature_along
    from mne_mmnet.solver.objective import _energy_and_grad

    gen = torch.Generator().manual_seed(4)
    L = torch.randn(6, 9, generator=gen, dtype=torch.float64)
    prior = SoftReLUAutoencoder(9, (5, 4), eps=0.2, seed=4, odd=odd).double()
    x = 3.0 * torch.randn(3, 9, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(3, 6, 2, generator=gen, dtype=torch.float64)
    d = torch.randn(3, 9, 2, generator=gen, dtype=torch.float64)
    _, _, state, _ = _energy_and_grad(x, y, L, prior, lam)
    curv, expansion = curvature_along(x, d, y, L, prior=prior, lam=lam, state=state)
    for k in range(3):

        def energy_k(v, y_k=y[k : k + 1]):
            return energy(v[None], y_k, L, prior=prior, lam=lam).total[0]

        hess = torch.autograd.functional.hessian(energy_k, x[k]).reshape(18, 18)
        exact = d[k].flatten() @ hess @ d[k].flatten()
        torch.testing.assert_close(curv[k], exact, rtol=1e-10, atol=1e-12)
    if lam == 0:
        assert expansion is None
        return
    _, phi_tangent = expansion
    step = 1e-6
    phi = [prior(normalize_sources(x + s * d)) for s in (-step, step)]
    torch.testing.assert_close(
        phi_tangent, (phi[1] - phi[0]) / (2 * step), rtol=1e-6, atol=1e-8
    )


@pytest.mark.parametrize("guarantee", ["checked", "certified"])
def test_forward_curvature_takes_the_steps_of_autograd(guarantee, monkeypatch):
    """The directional steps from the forward-mode d'Hd (and the segment
    majorant from its reused tangents) are those of autograd's
    Hessian-vector product with the majorant's own forward pass."""
    import mne_mmnet.solver.mm as mm

    gen = torch.Generator().manual_seed(2)
    L = torch.randn(15, 40, generator=gen, dtype=torch.float64)
    prior = SoftReLUAutoencoder(40, (8,), eps=0.2, seed=2, odd=True).double()
    x0 = torch.randn(20, 40, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(20, 15, 6, generator=gen, dtype=torch.float64)
    runs = []
    for forward in (True, False):
        monkeypatch.setattr(
            mm, "supports_forward_curvature", lambda p, s, on=forward: on
        )
        runs.append(_run(x0, y, L, prior, step="directional", gamma=1.999,
                         n_iter=6, guarantee=guarantee))  # fmt: skip
    (x_fwd, trace_fwd), (x_ad, trace_ad) = runs
    torch.testing.assert_close(x_fwd, x_ad, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(trace_fwd.total, trace_ad.total, rtol=1e-12, atol=0)
    assert torch.equal(trace_fwd.safeguard, trace_ad.safeguard)
    assert torch.equal(trace_fwd.certified, trace_ad.certified)
    torch.testing.assert_close(
        trace_fwd.majorant_curvature, trace_ad.majorant_curvature, rtol=1e-9, atol=0
    )
    if guarantee == "checked":  # rejections happened and were handled alike
        assert bool(trace_fwd.safeguard.any())


def test_projection_of_learned_curvature():
    gen = torch.Generator().manual_seed(2)
    L = torch.randn(15, 40, generator=gen, dtype=torch.float64)
    prior = SoftReLUAutoencoder(40, (8,), eps=0.2, seed=2).double()
    x0 = torch.randn(5, 40, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(5, 15, 6, generator=gen, dtype=torch.float64)
    x_mm, classical = _run(x0, y, L, prior)
    x_hi, high = _run(x0, y, L, prior, curvature=_ConstantCurvature(1e9))
    torch.testing.assert_close(x_hi, x_mm)  # clipped to nu_up = classical MM
    assert (high.clip_upper == 1).all() and (high.clip_lower == 0).all()
    assert (classical.clip_upper == 0).all()
    _, low = _run(x0, y, L, prior, curvature=_ConstantCurvature(1e-30))
    assert (low.clip_lower == 1).all()
    bound = curvature_bound(x0, y, L, prior=prior)
    nu_low = 1e-6 * bound.nu_up
    assert torch.allclose(
        low.step_ratio[0], 1.999 * nu_low * _grad_norm(x0, y, L, prior)
    )
    # R-MM-Net: no projection, the safeguard alone keeps the descent
    _, free = _run(x0, y, L, prior, curvature=_ConstantCurvature(1e3), bound=None)
    _check_descent(free)
    assert free.safeguard.any() and torch.isnan(free.nu_up).all()
    # the paper's R-MM-Net has no safeguard either: every step is taken and
    # the trace counts the ones that increased the energy
    _, wild = _run(
        x0, y, L, prior, curvature=_ConstantCurvature(1e3), bound=None, safeguard=False
    )
    increased = wild.total[1:] > wild.total[:-1]
    assert increased.any()
    assert torch.equal(wild.safeguard, increased)
    assert (wild.step_scale == 1).all()  # no backtracking
    # solve_mm honours a model trained without the safeguard
    model = SimpleNamespace(prior=prior, curvature=_ConstantCurvature(1e3), lam=1.0)
    for guarded in (True, False):
        model.safeguard = guarded
        _, trace = solve_mm(
            y, L, model=model, x0=x0, bound=None, n_iter=5, dtype="float64",
            device="cpu", return_trace=True, verbose=False,
        )  # fmt: skip
        rises = np.diff(trace.total, axis=0) > 0
        assert rises.any() != guarded


class _HalfBound:
    """Curvature model that reads the bound the solver passes."""

    accepts_bound = True

    def init_state(self, x):
        return None

    def __call__(self, g, x, state, nu_up=None):
        return 0.5 * nu_up[:, None, None] * torch.ones_like(g), state


def test_curvature_model_receives_bound():
    gen = torch.Generator().manual_seed(5)
    L = torch.randn(15, 40, generator=gen, dtype=torch.float64)
    x0 = torch.randn(4, 40, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(4, 15, 6, generator=gen, dtype=torch.float64)
    _, half = _run(x0, y, L, curvature=_HalfBound(), n_iter=1)
    _, full = _run(x0, y, L, n_iter=1)
    torch.testing.assert_close(half.step_ratio, 0.5 * full.step_ratio)
    assert (half.clip_upper == 0).all() and (half.clip_lower == 0).all()


def _grad_norm(x, y, L, prior):
    x = normalize_sources(x).requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(x, y, L, prior=prior).total.sum(), x)
    return torch.linalg.vector_norm(grad.flatten(1), dim=1) / torch.linalg.vector_norm(
        x.detach().flatten(1), dim=1
    )


def test_create_graph_gradient_matches_finite_differences():
    """Bilevel gradient through 4 unrolled iterations vs central differences."""
    gen = torch.Generator().manual_seed(3)
    L = torch.randn(8, 20, generator=gen, dtype=torch.float64)
    prior = SoftReLUAutoencoder(20, (6,), eps=0.3, seed=3).double()
    x0 = torch.randn(3, 20, 4, generator=gen, dtype=torch.float64)
    x_gt = torch.randn(3, 20, 4, generator=gen, dtype=torch.float64)
    y = L @ x_gt

    def loss(log_p):
        curvature = _ConstantCurvature(torch.exp(log_p))
        x, _ = _run(
            x0,
            y,
            L,
            prior,
            curvature=curvature,
            bound=None,
            n_iter=4,
            create_graph=True,
        )
        return (1 - cosine_similarity(x_gt, x)).sum()

    log_p = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(loss(log_p), log_p)
    with torch.no_grad():
        h = 1e-5
        fd = (loss(log_p + h) - loss(log_p - h)) / (2 * h)
    assert grad != 0
    torch.testing.assert_close(grad, fd, rtol=1e-4, atol=1e-9)
    # gradients also reach the prior's weights
    x, _ = _run(x0, y, L, prior, n_iter=3, create_graph=True)
    weight_grad = torch.autograd.grad(x.pow(3).sum(), prior.conv_layers[0].weight)[0]
    assert torch.isfinite(weight_grad).all() and weight_grad.abs().sum() > 0


def test_solve_mm_io_and_validation():
    rng = np.random.default_rng(0)
    L = rng.standard_normal((10, 25))
    y = rng.standard_normal((10, 7))
    x = solve_mm(y, L, n_iter=3, seed=0, device="cpu")
    assert isinstance(x, np.ndarray) and x.shape == (25, 7) and x.dtype == np.float32
    np.testing.assert_array_equal(x, solve_mm(y, L, n_iter=3, seed=0, device="cpu"))
    assert not np.array_equal(x, solve_mm(y, L, n_iter=3, seed=1, device="cpu"))
    xt, trace = solve_mm(
        torch.from_numpy(y)[None].repeat(2, 1, 1),
        torch.from_numpy(L),
        n_iter=3,
        seed=0,
        device="cpu",
        dtype="float64",
        return_trace=True,
        init="sloreta",
    )
    assert isinstance(xt, torch.Tensor) and xt.shape == (2, 25, 7)
    assert xt.dtype == torch.float64 and trace.total.shape == (4, 2)
    assert isinstance(trace.total, np.ndarray)
    x_user = solve_mm(y, L, n_iter=0, x0=np.ones((25, 7)), device="cpu")
    np.testing.assert_allclose(x_user, 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="either x0"):
        solve_mm(y, L, x0=np.ones((25, 7)), init="mne", device="cpu")
    with pytest.raises(ValueError, match="x0 must have shape"):
        solve_mm(y, L, x0=np.ones((25, 6)), device="cpu")
    with pytest.raises(ValueError, match="needs a learned curvature"):
        solve_mm(y, L, bound=None, device="cpu")
    with pytest.raises(ValueError, match="gamma"):
        solve_mm(y, L, gamma=2.0, device="cpu")
    with pytest.raises(ValueError, match="all-zero"):
        solve_mm(np.zeros_like(y), L, device="cpu")
    with pytest.raises(ValueError, match="n_channels"):
        solve_mm(y, L.T, device="cpu")
    with pytest.raises(ValueError, match="NaN"):
        solve_mm(y * np.nan, L, device="cpu")
    with pytest.raises(ValueError, match="bound"):
        solve_mm(y, L, bound="exact", device="cpu")


def test_linear_kernels_match_mne(template):
    """MNE kernel equals mne.minimum_norm's; sLORETA up to one global factor."""
    fwd, L_ref, _ = template
    rng = np.random.default_rng(1)
    src = np.zeros((994, 4))
    src[rng.choice(994, 3)] = rng.standard_normal((3, 4))
    data = fwd["sol"]["data"] @ src + 1e-2 * rng.standard_normal((90, 4))
    info = mne.create_info(fwd["info"]["ch_names"], 100.0, "eeg")
    evoked = mne.EvokedArray(data, info, verbose=False)
    evoked.set_eeg_reference(projection=True, verbose=False)
    cov = mne.Covariance(np.eye(90), evoked.ch_names, [], [], 1, verbose=False)
    inv = mne.minimum_norm.make_inverse_operator(
        evoked.info, fwd, cov, loose=0.0, depth=None, fixed=True, verbose=False
    )
    y_ref = data - data.mean(0)
    for method, ours in (("MNE", "mne"), ("sLORETA", "sloreta")):
        stc = mne.minimum_norm.apply_inverse(evoked, inv, 1 / 9, method, verbose=False)
        est = (
            linear_inverse_kernel(torch.from_numpy(L_ref), method=ours).numpy() @ y_ref
        )
        factor = np.sum(stc.data * est) / np.sum(est * est)
        if method == "MNE":
            assert factor == pytest.approx(1.0, rel=1e-8)
        np.testing.assert_allclose(
            stc.data, factor * est, rtol=0, atol=1e-8 * abs(stc.data).max()
        )


def test_template_localisation_better_than_chance(template):
    """Focal sources at 5 dB: classical MM peaks near the truth."""
    _, L, pos = template
    rng = np.random.default_rng(0)
    n_src, n_times = 8, 32
    seeds = rng.choice(994, n_src, replace=False)
    wave = np.exp(-0.5 * ((np.arange(n_times) - 16) / 4) ** 2)
    x_true = np.zeros((n_src, 994, n_times))
    x_true[np.arange(n_src), seeds] = wave
    y = L @ x_true
    noise = rng.standard_normal(y.shape)
    noise -= noise.mean(1, keepdims=True)
    signal = np.linalg.norm(y, axis=(1, 2), keepdims=True)
    y += noise / np.linalg.norm(noise, axis=(1, 2), keepdims=True) * signal / 10**0.25
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    chance = (dist < 0.02).mean()  # P(random region within 20 mm) ~ 0.021
    assert chance < 0.05

    def errors(**kwargs):
        x, trace = solve_mm(
            y, L, n_iter=10, seed=0, device="cpu", return_trace=True, **kwargs
        )
        assert (np.diff(trace.total, axis=0) <= 0).all()
        return dist[seeds, np.abs(x).max(2).argmax(1)]

    # measured: 7 / 8 peaks within 20 mm (11 mm for the eighth)
    assert (errors(init="sloreta") < 0.02).mean() >= 0.75
    # from the random start the directional step moves (median 23 mm measured)
    # where the diagonal analytic step barely leaves the start (median 62 mm),
    # against 76 mm between random regions on average
    assert np.median(errors(step="directional")) < 0.04 < dist.mean()


def test_prior_start_is_the_prior_at_the_sloreta_estimate():
    """init='prior': Phi(x_s / rms(x_s)), through every entry point."""
    from mne_mmnet.networks import MMNet
    from mne_mmnet.solver import initial_estimate

    torch.manual_seed(0)
    n_ch, n_src, n_t = 7, 20, 12
    L = torch.randn(n_ch, n_src, dtype=torch.float64)
    L = L - L.mean(0)
    y = torch.randn(2, n_ch, n_t, dtype=torch.float64)
    y = y - y.mean(1, keepdim=True)
    prior = SoftReLUAutoencoder(n_src, hidden=(9, 5), odd=True).double()
    x_s = initial_estimate(y, L, init="sloreta")
    expected = prior(normalize_sources(x_s))
    got = initial_estimate(y, L, init="prior", prior=prior)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(normalize_sources(got), normalize_sources(x_s))
    with pytest.raises(ValueError, match="needs the prior"):
        initial_estimate(y, L, init="prior")
    model = MMNet(prior, None, init="prior", n_iter=3).double()
    torch.testing.assert_close(model.initial_estimate(y, L), expected)
    assert MMNet.from_config(model.config).init == "prior"
    # solve_mm with the model starts there too: zero iterations return it
    x = solve_mm(y, L, model=model, n_iter=0, dtype="float64")
    torch.testing.assert_close(x, normalize_sources(expected))
