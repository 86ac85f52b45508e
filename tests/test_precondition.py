"""The step metrics: closed forms, eigenvalue bound, descent in the solver."""

import numpy as np
import pytest
import torch

from mne_mmnet.networks import MMNet
from mne_mmnet.solver.precondition import precondition


def _problem(seed=0, n_channels=6, n_sources=15, n_times=4, batch=3):
    gen = torch.Generator().manual_seed(seed)
    L = torch.randn(n_channels, n_sources, generator=gen, dtype=torch.float64)
    p = torch.rand(batch, n_sources, n_times, generator=gen, dtype=torch.float64)
    g = torch.randn(batch, n_sources, n_times, generator=gen, dtype=torch.float64)
    return L, p + 0.01, g


def test_diagonal_is_elementwise():
    L, p, g = _problem()
    torch.testing.assert_close(precondition(p, g, L, kind="diagonal"), p * g)


@pytest.mark.parametrize("reg", [0.01, 0.1, 1.0])
def test_leadfield_metric_matches_dense_inverse(reg):
    """P = (D^-1 + L'L / rho)^-1 with D = diag(rms_t p), formed densely."""
    L, p, g = _problem(seed=1)
    out = precondition(p, g, L, kind="leadfield", reg=reg)
    for b in range(p.shape[0]):
        w = p[b].pow(2).mean(-1).sqrt().numpy()
        Ln = L.numpy()
        rho = reg * np.mean(np.diag(Ln @ np.diag(w) @ Ln.T))
        P = np.linalg.inv(np.diag(1 / w) + Ln.T @ Ln / rho)
        np.testing.assert_allclose(out[b].numpy(), P @ g[b].numpy(), rtol=1e-9)
        eig = np.linalg.eigvalsh((P + P.T) / 2)
        # positive definite, never above the largest projected step size:
        # the majorant's curvature P^-1 is at least 1 / nu_up
        assert eig.min() > 0
        assert eig.max() <= w.max() * (1 + 1e-12)
        assert eig.max() < w.max()  # mixing through L strictly shrinks it


def test_leadfield_metric_rejects_bad_reg():
    L, p, g = _problem()
    with pytest.raises(ValueError, match="reg must be > 0"):
        precondition(p, g, L, kind="leadfield", reg=0.0)
    with pytest.raises(ValueError, match="kind"):
        precondition(p, g, L, kind="dense")


@pytest.mark.parametrize("guarantee", ["checked", "certified"])
def test_leadfield_metric_solver_descends(guarantee):
    """The energy never rises; the config round-trips the metric."""
    torch.manual_seed(0)
    n_ch, n_src, n_t = 8, 30, 16
    model = MMNet(
        dict(n_sources=n_src, hidden=(12, 6), odd=True),
        dict(n_sources=n_src, embed=8, hidden=8, sign_invariant=True),
        preconditioner="leadfield",
        preconditioner_reg=0.2,
        guarantee=guarantee,
        n_iter=6,
    ).double()
    rebuilt = MMNet.from_config(model.config)
    assert rebuilt.preconditioner == "leadfield"
    assert rebuilt.preconditioner_reg == 0.2
    L = torch.randn(n_ch, n_src, dtype=torch.float64)
    L = L - L.mean(0)
    x_true = torch.zeros(2, n_src, n_t, dtype=torch.float64)
    x_true[:, 3] = torch.sin(torch.linspace(0, 3, n_t))
    y = torch.einsum("cs,bst->bct", L, x_true)
    y = y + 0.05 * torch.randn_like(y)
    x0 = model.initial_estimate(y, L)
    with torch.no_grad():
        _, _, trace = model.iterate(x0, y, L)
    total = trace.total
    assert bool((total[1:] <= total[:-1] + 1e-12).all())
    assert float(total[-1].mean()) < float(total[0].mean())


def test_mmnet_rejects_unknown_metric():
    with pytest.raises(ValueError, match="preconditioner"):
        MMNet(None, None, preconditioner="dense")
    with pytest.raises(ValueError, match="preconditioner_reg"):
        MMNet(None, None, preconditioner_reg=-1.0)
