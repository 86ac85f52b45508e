"""Preconditioners that turn the projected curvature into an MM step direction.

The learned curvature gives, per source, a step size ``p`` clipped to
``[nu_low, nu_up]``. Any symmetric positive-definite ``P`` with ``P <= nu_up I``
defines an equally valid quadratic majorant (its curvature ``P^{-1}`` is at
least the bound ``1 / nu_up``), so the step ``-P g`` keeps the guarantee of
the diagonal step ``-p * g``. Two choices:

``"diagonal"``
    ``P = diag(p)`` (paper, eq. 6).
``"leadfield"``
    ``P = (D^{-1} + L'L / rho)^{-1}`` with ``D = diag(w)``, ``w`` the RMS of
    ``p`` over time (so ``w <= nu_up``) and ``rho`` a fixed fraction of the
    mean of ``diag(L D L')``. By the Woodbury identity
    ``P = D - D L' (L D L' + rho I)^{-1} L D``: a weighted minimum-norm
    operator that mixes sources through the leadfield. Its eigenvalues lie in
    ``(0, max w]``, so ``P <= nu_up I``. Applied to the data term's gradient
    ``L' r`` it gives ``rho D L' (L D L' + rho I)^{-1} r``, the reweighted
    minimum-norm (FOCUSS-like) correction of the residual with weights ``w``.
"""

import torch
from mne.utils import _check_option

PRECONDITIONERS = ("diagonal", "leadfield")


def precondition(p, grad, L, *, kind="diagonal", reg=0.1):
    """Apply the step metric ``P(p)`` to ``grad``.

    Parameters
    ----------
    p : torch.Tensor, shape (batch, n_sources, n_times)
        Projected per-source step sizes (positive).
    grad : torch.Tensor, shape (batch, n_sources, n_times)
        Energy gradient.
    L : torch.Tensor, shape (n_channels, n_sources)
        Leadfield the energy uses.
    kind : "diagonal" | "leadfield"
        See the module docstring.
    reg : float
        ``rho`` relative to the mean of ``diag(L D L')`` (``"leadfield"``).

    Returns
    -------
    direction : torch.Tensor, shape (batch, n_sources, n_times)
        ``P g``; ``g' P g > 0`` for ``g != 0``.
    """
    _check_option("kind", kind, PRECONDITIONERS)
    if kind == "diagonal":
        return p * grad
    if not reg > 0:
        raise ValueError(f"reg must be > 0, got {reg}.")
    w = p.pow(2).mean(-1).sqrt()  # (batch, n_sources), at most nu_up
    w_grad = w[..., None] * grad
    gram = (L * w[:, None, :]) @ L.T  # L D L', (batch, n_channels, n_channels)
    rho = reg * gram.diagonal(dim1=-2, dim2=-1).mean(-1)
    eye = torch.eye(L.shape[0], dtype=L.dtype, device=L.device)
    chol = torch.linalg.cholesky(gram + rho[:, None, None] * eye)
    correction = torch.cholesky_solve(L @ w_grad, chol)
    return w_grad - w[..., None] * (L.T @ correction)
