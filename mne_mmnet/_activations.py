"""SoftReLU and its derivatives: shared by the prior and the curvature bound.

A leaf module (imports torch only), so that neither :mod:`mne_mmnet.solver`
nor :mod:`mne_mmnet.networks` imports the other to get them.
"""

import torch


def softrelu(z, eps):
    """SoftReLU ``(z + sqrt(z**2 + eps**2)) / 2``, a smooth ReLU."""
    return 0.5 * (z + torch.sqrt(z * z + eps * eps))


def softrelu_grad(z, eps):
    """First derivative of :func:`softrelu`, in (0, 1)."""
    return 0.5 * (1.0 + z / torch.sqrt(z * z + eps * eps))


def softrelu_hess(z, eps):
    """Second derivative of :func:`softrelu`, in (0, 1 / (2 eps)]."""
    q = z * z + eps * eps
    return 0.5 * eps * eps / (q * torch.sqrt(q))  # q ** 1.5, three times faster
