"""The curvature bounds are upper bounds of exact Hessians, and not too loose."""

import math

import pytest
import torch
from torch.func import jacrev, vmap

from mne_mmnet.networks import SoftReLUAutoencoder, conv_operator_norm
from mne_mmnet.solver import curvature_bound, hvp_curvature_bound
from mne_mmnet.solver.bounds import _data_bound, _prior_bound_terms, leadfield_norm
from mne_mmnet.solver.objective import (
    _energy_terms,
    _PriorState,
    cosine_similarity,
    normalize_sources,
)

N_CH, N_SRC, N_T = 12, 30, 4


def hessian(fun):
    """Reverse-over-reverse Hessian (forward-mode AD warns in torch 2.13)."""
    return jacrev(jacrev(fun))


SQRT3 = math.sqrt(3.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny batched LAPACK calls run far faster on one thread."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)


def _problem(seed, n_points, hidden=(8,), eps=0.2, odd=False):
    """Random leadfield, prior and points (float64), scales over 4 decades."""
    gen = torch.Generator().manual_seed(seed)
    L = torch.randn(N_CH, N_SRC, generator=gen, dtype=torch.float64)
    L[:, : N_SRC // 3] *= 0.1  # uneven column norms, like a real leadfield
    prior = SoftReLUAutoencoder(N_SRC, hidden, eps=eps, seed=seed, odd=odd).double()
    with torch.no_grad():  # larger weights: stronger curvature of the prior
        for conv in prior.conv_layers:
            conv.weight.mul_(1.5)
    scale = 10 ** (
        4 * torch.rand(n_points, 1, 1, generator=gen, dtype=torch.float64) - 2
    )
    x = scale * torch.randn(n_points, N_SRC, N_T, generator=gen, dtype=torch.float64)
    y = torch.randn(n_points, N_CH, N_T, generator=gen, dtype=torch.float64)
    return L, prior, x, y


def _max_eig(hess):
    n = hess.shape[0]
    return torch.linalg.eigvalsh(hess.reshape(n, N_SRC * N_T, N_SRC * N_T))[:, -1]


def _hessians(fun, x, y):
    flat = x.reshape(len(x), -1)
    return vmap(hessian(fun))(flat, y)


def test_cosine_hessian_constant_is_tight():
    """Eq. 14: |a|^2 ||hess_a S_C(a, b)|| <= 2/sqrt(3), attained."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3000, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(3000, 3, generator=gen, dtype=torch.float64)

    def cos(a, b):
        return cosine_similarity(a[None], b[None])[0]

    hess = vmap(hessian(cos))(a, b)
    scaled = torch.linalg.matrix_norm(hess, ord=2) * (a * a).sum(1)
    assert scaled.max() <= 2 / SQRT3 * (1 + 1e-10)
    assert scaled.max() >= 0.99 * 2 / SQRT3


@pytest.mark.parametrize("seed", range(14))
def test_analytic_bounds_dominate_exact_hessians(seed):
    """1,400 points in all: data (eq. 16), Gauss-Newton (eq. 18), full bound.

    Seeds 10-13 use an odd prior (the odd part of the network, the
    sign-equivariant models), whose residual bound adds the two passes'.
    """
    L, prior, x, y = _problem(
        seed, 100, hidden=((8,), (10, 6))[seed % 2], odd=seed >= 10
    )
    lam = 1.0 + seed % 3

    def data_energy(xf, yi):
        return _energy_terms(xf.reshape(1, N_SRC, N_T), yi[None], L, None, lam)[0][0]

    def total_energy(xf, yi):
        terms = _energy_terms(xf.reshape(1, N_SRC, N_T), yi[None], L, prior, lam)[0]
        return terms.total[0]

    # data term alone, eq. (16) without the floor
    exact = _max_eig(_hessians(data_energy, x, y))
    bound = _data_bound(x, L, leadfield_norm(L), 0.0)
    assert (exact <= bound).all()
    # full energy (with the unit-RMS rescaling of the prior's input)
    exact_total = _max_eig(_hessians(total_energy, x, y))
    full = curvature_bound(x, y, L, prior=prior, lam=lam, tikhonov=0.0)
    assert (exact_total <= full.mu_data + lam * full.mu_prior).all()
    assert torch.allclose(full.nu_up, 1 / (full.mu_data + lam * full.mu_prior))
    # Gauss-Newton and full prior bound of 1 - S_C(z, Phi(z)) at z
    z = normalize_sources(x)
    phi, pre = prior.forward_with_preactivations(z)
    state = _PriorState(z, phi.detach(), [p.detach() for p in pre])
    gauss_newton, residual, _ = _prior_bound_terms(
        prior, state, prior.operator_norms(N_T)
    )

    def pair_energy(ab):
        a, b = ab[: N_SRC * N_T], ab[N_SRC * N_T :]
        return 1 - cosine_similarity(a[None], b[None])[0]

    def phi_flat(zf):
        return prior(zf.reshape(1, N_SRC, N_T)).reshape(-1)

    def prior_energy(zf):
        return pair_energy(torch.cat([zf, phi_flat(zf)]))

    zf = z.reshape(len(z), -1)
    jac = vmap(jacrev(phi_flat))(zf)
    block = vmap(hessian(pair_energy))(
        torch.cat([zf, phi.detach().reshape(len(z), -1)], 1)
    )
    stacked = torch.cat([torch.eye(zf.shape[1], dtype=zf.dtype).expand_as(jac), jac], 1)
    gn_exact = stacked.transpose(1, 2) @ block @ stacked
    assert (torch.linalg.eigvalsh(gn_exact)[:, -1] <= gauss_newton).all()
    prior_exact = torch.linalg.eigvalsh(vmap(hessian(prior_energy))(zf))[:, -1]
    assert (prior_exact <= gauss_newton + residual).all()


def test_data_bound_is_tight_in_direction():
    """Eq. 16 is attained up to the 2/sqrt(3) vs per-point constant gap."""
    L, _, x, y = _problem(0, 200)

    def data_energy(xf, yi):
        return _energy_terms(xf.reshape(1, N_SRC, N_T), yi[None], L, None, 1.0)[0][0]

    exact = _max_eig(_hessians(data_energy, x, y))
    ratio = _data_bound(x, L, leadfield_norm(L), 0.0) / exact
    assert ratio.min() >= 1.0
    assert ratio.median() < 10


def _dense_conv_matrix(weight, n_times):
    c_out, c_in, k = weight.shape
    eye = torch.eye(c_in * n_times, dtype=weight.dtype).reshape(-1, c_in, n_times)
    out = torch.nn.functional.conv1d(eye, weight, padding=k // 2)
    return out.reshape(c_in * n_times, c_out * n_times).T


@pytest.mark.parametrize("shape", [(6, 5, 3), (4, 9, 5), (7, 7, 1)])
def test_conv_operator_norm_is_certified(shape):
    """Certified norms >= exact dense norm, within a measured factor."""
    gen = torch.Generator().manual_seed(sum(shape))
    weight = torch.randn(*shape, generator=gen, dtype=torch.float64)
    universal = conv_operator_norm(weight, None)
    for n_times in (1, 2, 3, 5, 8, 16, 40):
        exact = torch.linalg.matrix_norm(_dense_conv_matrix(weight, n_times), ord=2)
        per_length = conv_operator_norm(weight, n_times)
        assert exact <= per_length <= universal
        # measured factors (these shapes and (16, 32, 3), (32, 8, 3)): up to
        # 2.65 at T = 1 (only the centre tap acts), <= 1.13 for T >= 5,
        # <= 1.023 for T >= 16, <= 1.005 at T = 40; the T-independent bound
        # <= 1.06 at T = 40 (Bernstein factor 1 / sqrt(1 - (k - 1) pi / 128))
        limit = 3.0 if n_times < 5 else 1.15 if n_times < 16 else 1.03
        assert per_length <= exact * limit
        if n_times == 40:
            assert per_length <= exact * 1.01
            assert universal <= exact * 1.06


def test_operator_norm_cache_follows_weights():
    prior = SoftReLUAutoencoder(10, (4,), seed=0).double()
    first = prior.operator_norms(16)
    assert prior.operator_norms(16) is first
    with torch.no_grad():  # small step: certified triangle-inequality update
        prior.conv_layers[0].weight.add_(1e-4 * torch.randn(4, 10, 3))
    updated = prior.operator_norms(16)
    exact = conv_operator_norm(prior.conv_layers[0].weight, 16)
    assert exact <= updated[0] <= exact + 0.01 * first[0]
    assert updated[1] == first[1]
    with torch.no_grad():  # large change: recomputed from scratch
        prior.conv_layers[0].weight.mul_(2.0)
    torch.testing.assert_close(
        prior.operator_norms(16)[0],
        torch.tensor(conv_operator_norm(prior.conv_layers[0].weight, 16)).double(),
    )


@pytest.mark.parametrize("shape", [(6, 5, 3), (9, 4, 5), (7, 7, 1)])
def test_taps_norm_bound_covers_the_convolution(shape):
    """Sum of certified tap norms >= exact dense norm; equal to the svd sum."""
    from mne_mmnet.networks.autoencoder import taps_norm_bound

    gen = torch.Generator().manual_seed(sum(shape))
    delta = torch.randn(*shape, generator=gen, dtype=torch.float64)
    bound = taps_norm_bound(delta)
    svd_sum = sum(
        float(torch.linalg.matrix_norm(delta[..., t], ord=2)) for t in range(shape[-1])
    )
    assert svd_sum <= bound <= svd_sum * (1 + 1e-3)
    for n_times in (1, 4, 16):
        exact = torch.linalg.matrix_norm(_dense_conv_matrix(delta, n_times), ord=2)
        assert exact <= bound


def test_dense_small_change_is_bounded_by_tap_spectral_norms():
    """A change over the Frobenius allowance but within the spectral one is
    bounded without recomputing the norm, and the bound stays certified."""
    prior = SoftReLUAutoencoder(40, (40,), seed=0).double()
    first = prior.operator_norms(16)
    refs = prior._norm_cache[16]["refs"][0]
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(40, 40, 3, generator=gen, dtype=torch.float64)
    frobenius = float(torch.linalg.vector_norm(noise.flatten(0, 1), dim=0).sum())
    noise *= 0.02 * float(first[0]) / frobenius  # Frobenius slack: 2 %
    with torch.no_grad():
        prior.conv_layers[0].weight.add_(noise)
    updated = prior.operator_norms(16)
    assert prior._norm_cache[16]["refs"][0] is refs  # not recomputed
    exact = conv_operator_norm(prior.conv_layers[0].weight, 16)
    assert exact <= updated[0] <= first[0] * 1.01


def test_rounded_lengths_bound_every_length():
    """Training mode: norms at the next power of two cover the exact length."""
    prior = SoftReLUAutoencoder(10, (4,), seed=0).double()
    prior.round_norm_lengths = True
    assert prior.operator_norms(33) is prior.operator_norms(64)
    for n_times in (1, 5, 33, 64):
        norms = prior.operator_norms(n_times)
        for conv, norm in zip(prior.conv_layers, norms):
            dense = _dense_conv_matrix(conv.weight.detach(), n_times)
            assert torch.linalg.matrix_norm(dense, ord=2) <= norm


@pytest.mark.parametrize("odd", [False, True])
def test_prior_hessian_bounds_cover_exact_hessians(odd):
    """The prior's own bounds of ||sum_i w_i Hess Phi_i|| against torch.func."""
    prior = SoftReLUAutoencoder(5, (6, 4), seed=3, eps=0.2, odd=odd).double()
    norms = prior.operator_norms(4)
    gen = torch.Generator().manual_seed(4)
    everywhere = float(prior.hessian_norm_bound(norms))
    for _ in range(5):
        z = torch.randn(1, 5, 4, generator=gen, dtype=torch.float64)
        w = torch.randn(1, 5, 4, generator=gen, dtype=torch.float64)
        exact = jacrev(jacrev(lambda t, w=w: (w * prior(t)).sum()))(z)
        exact = exact.detach().reshape(20, 20)
        top = float(torch.linalg.matrix_norm(exact, ord=2))
        with torch.no_grad():
            _, pre = prior.forward_with_preactivations(z)
            here = float(prior.residual_curvature_bound(pre, w, norms)[0])
        scale = float(torch.linalg.vector_norm(w))
        assert top <= here * (1 + 1e-9) <= everywhere * scale * (1 + 1e-9)
    jac = jacrev(prior)(z).detach().reshape(20, 20)
    assert torch.linalg.matrix_norm(jac, ord=2) <= prior.jacobian_norm_bound(norms)


def test_odd_prior_is_odd_and_bound_covers_both_passes():
    """Phi(-x) = -Phi(x) exactly; residual = sum of the two passes' bounds."""
    _, prior, x, _ = _problem(5, 4, hidden=(10, 6), odd=True)
    torch.testing.assert_close(prior(-x), -prior(x), rtol=0, atol=0)
    plain = SoftReLUAutoencoder(N_SRC, (10, 6), eps=0.2, seed=5).double()
    plain.load_state_dict(prior.state_dict())
    z = normalize_sources(x)
    torch.testing.assert_close(prior(z), 0.5 * (plain(z) - plain(-z)))


@pytest.mark.parametrize("with_prior", [False, True])
def test_hvp_power_iteration_matches_eigvalsh(with_prior):
    L, prior, x, y = _problem(3, 6)
    prior = prior if with_prior else None

    def total_energy(xf, yi):
        terms = _energy_terms(xf.reshape(1, N_SRC, N_T), yi[None], L, prior, 1.0)[0]
        return terms.total[0]

    hess = _hessians(total_energy, x, y).reshape(len(x), N_SRC * N_T, -1)
    exact = torch.linalg.eigvalsh(hess).abs().amax(1)
    est = hvp_curvature_bound(x, y, L, prior=prior, n_power_iter=300, seed=0)
    torch.testing.assert_close(est.lambda_max, exact, rtol=0.01, atol=0)
    torch.testing.assert_close(est.nu_up, 1 / est.lambda_max)


@pytest.mark.parametrize("odd", [False, True])
def test_residual_vectors_from_gradient_pass(odd):
    """v_res taken from the energy's backward pass = transposed recursion."""
    from mne_mmnet.solver.bounds import _analytic_bound
    from mne_mmnet.solver.objective import _energy_and_grad

    L, prior, x, y = _problem(4, 5, hidden=(10, 6), odd=odd)
    _, _, state, _ = _energy_and_grad(x, y, L, prior, 0.7)
    assert state.v_res is not None and len(state.v_res) == 3
    norms = prior.operator_norms(N_T)
    fused = _analytic_bound(x, L, leadfield_norm(L), prior, state, norms, 0.0)
    plain = _analytic_bound(
        x, L, leadfield_norm(L), prior, state._replace(v_res=None), norms, 0.0
    )
    torch.testing.assert_close(fused, plain)


@pytest.mark.parametrize("shape", [(60, 40, 3), (30, 70, 5), (50, 50, 1)])
def test_certified_symbol_norm_against_exact_spectra(shape):
    """Power estimate + Cholesky proof: never below the exact maximum, 0.2 % above."""
    from mne_mmnet.networks.autoencoder import (
        _certify_below,
        _max_gram_eig,
        _symbols,
        _tap_grams,
    )

    gen = torch.Generator().manual_seed(sum(shape))
    weight = torch.randn(*shape, generator=gen, dtype=torch.float64)
    grams = _tap_grams(weight)
    omegas = torch.linspace(0, torch.pi, 37, dtype=torch.float64)
    mats = _symbols(grams, omegas)
    # the symbol built from real and imaginary parts is the plain sum
    k = shape[-1]
    taps = weight.permute(2, 0, 1).to(torch.complex128)
    phases = torch.exp(-1j * omegas[:, None] * torch.arange(k))
    symbol = torch.einsum("wt,toi->woi", phases, taps)
    plain = symbol.conj().transpose(-2, -1) @ symbol
    if shape[0] < shape[1]:
        plain = symbol @ symbol.conj().transpose(-2, -1)
    torch.testing.assert_close(
        torch.linalg.eigvalsh(mats), torch.linalg.eigvalsh(plain), rtol=1e-10, atol=1e-9
    )
    exact = float(torch.linalg.eigvalsh(mats)[:, -1].max())
    bound = float(_max_gram_eig(grams, omegas))
    # 0.1 % inflation of each evaluated frequency, 0.1 % for the gaps
    assert exact <= bound <= exact * (1 + 2.1e-3)
    # the proof step itself: refuses a level just below the top eigenvalue
    top = torch.linalg.eigvalsh(mats)[:, -1]

    def proved(m, level):
        return bool(_certify_below(m, torch.full((len(m),), level)).all())

    assert proved(mats, float(top.max()) * (1 + 1e-6))
    assert not proved(mats, float(top.max()) * (1 - 1e-6))
    assert not proved(mats[:1], float(top[0]) * (1 - 1e-6))


def test_leadfield_norm_is_the_spectral_norm():
    gen = torch.Generator().manual_seed(3)
    for shape in ((90, 994), (30, 12), (1, 5)):
        L = torch.randn(*shape, generator=gen, dtype=torch.float64)
        exact = torch.linalg.matrix_norm(L, ord=2)
        norm = leadfield_norm(L.float())
        assert norm.dtype == torch.float64
        exact32 = torch.linalg.matrix_norm(L.float().double(), ord=2)
        assert exact32 <= norm <= exact32 * (1 + 1e-10)
        torch.testing.assert_close(norm, exact, rtol=1e-6, atol=0)


@pytest.mark.parametrize("seed", range(6))
def test_gap_refinement_matches_every_frequency(seed, monkeypatch):
    """Bernstein gaps: the maximum over 301 frequencies without factorising all."""
    import mne_mmnet.networks._conv_norms as conv_norms

    gen = torch.Generator().manual_seed(seed)
    k = 9 if seed % 2 else 3  # long kernels: narrow spectral peaks between points
    weight = torch.randn(12, 8, k, generator=gen, dtype=torch.float64)
    if seed >= 4:  # a resonance away from 0 and pi
        weight = weight * torch.cos(2.2 * torch.arange(k, dtype=torch.float64))
    grams = conv_norms._tap_grams(weight)
    omegas = torch.linspace(0, torch.pi, 301, dtype=torch.float64)

    def exact_max(freqs):
        mats = conv_norms._symbols(grams, freqs)
        return float(torch.linalg.eigvalsh(mats)[:, -1].max())

    exact = exact_max(omegas)
    evaluated = []
    tops = conv_norms._certified_tops
    monkeypatch.setattr(
        conv_norms, "_certified_tops", lambda m: evaluated.append(len(m)) or tops(m)
    )
    bound = float(conv_norms._max_gram_eig(grams, omegas))
    assert exact <= bound <= exact * (1 + 2.1e-3)
    assert sum(evaluated) < len(omegas)
    # the last gap is mirrored at pi: frequencies stopping short of pi
    short = omegas[:150]
    exact = exact_max(short)
    assert exact <= float(conv_norms._max_gram_eig(grams, short)) <= exact * 1.0021
