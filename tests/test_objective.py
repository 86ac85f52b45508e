"""Energy of eq. (8): values, invariances, gradients vs finite differences."""

import numpy as np
import pytest
import torch

from mne_mmnet.networks import (
    SoftReLUAutoencoder,
    softrelu,
    softrelu_grad,
    softrelu_hess,
)
from mne_mmnet.solver import cosine_similarity, energy, normalize_sources


def _problem(n_times=3, batch=2, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    L = torch.randn(6, 10, generator=gen, dtype=dtype)
    x = torch.randn(batch, 10, n_times, generator=gen, dtype=dtype)
    y = torch.randn(batch, 6, n_times, generator=gen, dtype=dtype)
    prior = SoftReLUAutoencoder(10, (5, 4), eps=0.3, seed=seed).to(dtype)
    return x, y, L, prior


def test_energy_matches_numpy_formula():
    x, y, L, prior = _problem()
    terms = energy(x, y, L, prior=prior, lam=0.7)
    xn, yn, Ln = x.numpy(), y.numpy(), L.numpy()
    for i in range(len(xn)):
        lx = Ln @ xn[i]
        cos = (yn[i] * lx).sum() / np.linalg.norm(yn[i]) / np.linalg.norm(lx)
        np.testing.assert_allclose(terms.fidelity[i].item(), 1 - cos, rtol=1e-12)
        z = xn[i] * np.sqrt(xn[i].size) / np.linalg.norm(xn[i])
        phi = prior(torch.from_numpy(z)[None])[0].detach().numpy()
        cos_p = (z * phi).sum() / np.linalg.norm(z) / np.linalg.norm(phi)
        np.testing.assert_allclose(terms.prior[i].item(), 1 - cos_p, rtol=1e-12)
    torch.testing.assert_close(terms.total, terms.fidelity + 0.7 * terms.prior)
    assert energy(x, y, L).prior.abs().max() == 0  # prior=None: data term only


@pytest.mark.parametrize("n_times", [1, 2, 7])
def test_energy_is_scale_free_and_any_length(n_times):
    x, y, L, prior = _problem(n_times)
    ref = energy(x, y, L, prior=prior)
    scaled = energy(
        x * torch.tensor([1e-3, 250.0])[:, None, None], y * 3, L, prior=prior
    )
    for a, b in zip(ref, scaled):
        torch.testing.assert_close(a, b)
    assert ref.total.shape == (2,)
    z = normalize_sources(x)
    torch.testing.assert_close(z.pow(2).mean((1, 2)), torch.ones(2, dtype=z.dtype))


def _central_differences(fun, x, h=1e-6):
    flat = x.reshape(-1)
    grad = torch.zeros_like(flat)
    for i in range(flat.numel()):
        step = torch.zeros_like(flat)
        step[i] = h
        plus = fun((flat + step).reshape(x.shape)).sum()
        minus = fun((flat - step).reshape(x.shape)).sum()
        grad[i] = (plus - minus) / (2 * h)
    return grad.reshape(x.shape)


@pytest.mark.parametrize("term", ["fidelity", "prior", "total"])
def test_gradient_matches_finite_differences(term):
    x, y, L, prior = _problem(n_times=3, batch=1, seed=1)

    def fun(xx):
        return getattr(energy(xx, y, L, prior=prior, lam=1.3), term)

    x_leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fun(x_leaf).sum(), x_leaf)
    with torch.no_grad():
        fd = _central_differences(fun, x)
    rel = torch.linalg.vector_norm(grad - fd) / torch.linalg.vector_norm(grad)
    assert rel < 1e-5


def test_cosine_similarity_matches_sklearn():
    from sklearn.metrics.pairwise import cosine_similarity as sk_cos

    gen = torch.Generator().manual_seed(3)
    a = torch.randn(4, 5, 6, generator=gen, dtype=torch.float64)
    b = torch.randn(4, 5, 6, generator=gen, dtype=torch.float64)
    expected = np.diag(sk_cos(a.reshape(4, -1).numpy(), b.reshape(4, -1).numpy()))
    np.testing.assert_allclose(cosine_similarity(a, b).numpy(), expected, rtol=1e-12)


def test_softrelu_derivatives():
    z = torch.linspace(-3, 3, 101, dtype=torch.float64, requires_grad=True)
    eps = 0.4
    (d1,) = torch.autograd.grad(softrelu(z, eps).sum(), z, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), z)
    torch.testing.assert_close(d1.detach(), softrelu_grad(z, eps).detach())
    torch.testing.assert_close(d2, softrelu_hess(z, eps).detach())
    assert softrelu_hess(z, eps).max() <= 1 / (2 * eps)
    assert 0 < softrelu_grad(z, eps).min() and softrelu_grad(z, eps).max() < 1


def test_autoencoder_shapes_and_seed():
    prior = SoftReLUAutoencoder(12, (4, 3), kernel_size=5, seed=0)
    again = SoftReLUAutoencoder(12, (4, 3), kernel_size=5, seed=0)
    for n_times in (1, 4, 33):
        x = torch.randn(2, 12, n_times)
        torch.testing.assert_close(prior(x), again(x))
        phi, pre = prior.forward_with_preactivations(x)
        assert phi.shape == x.shape and len(pre) == 3 and pre[0] is x
    assert len(prior.conv_layers) == 3
    with pytest.raises(ValueError, match="odd"):
        SoftReLUAutoencoder(12, (4,), kernel_size=4)


def test_energy_validation():
    x, y, L, prior = _problem()
    with pytest.raises(ValueError, match="batched"):
        energy(x[0], y[0], L)
    with pytest.raises(ValueError, match="L must have shape"):
        energy(x, y, L.T)
    with pytest.raises(ValueError, match="lam"):
        energy(x, y, L, lam=-1.0)
    with pytest.raises(TypeError):
        energy(x.numpy(), y, L)
