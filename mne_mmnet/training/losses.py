"""Losses of the bilevel training: the meta-loss (eq. 11) and prior denoising."""

from collections import namedtuple

import torch

from ..solver import cosine_similarity, normalize_sources

MetaLoss = namedtuple("MetaLoss", ["total", "ground_truth", "prior"])
MetaLoss.__doc__ = """Per-sample meta-loss terms, each of shape (batch,)."""


def meta_loss(x_hat, x_gt, prior=None):
    """Outer loss of Algorithm 1 (eq. 11), per sample.

    ``(1 - S_C(x_gt, x_hat)) + (1 - S_C(x_hat, Phi(x_hat)))``; the second term
    is dropped (zero) when ``prior`` is None. As in the energy, the prior is
    evaluated on the unit-RMS rescaling of ``x_hat``
    (:func:`mne_mmnet.solver.normalize_sources`).

    Parameters
    ----------
    x_hat : torch.Tensor
        Estimate, (batch, n_sources, n_times).
    x_gt : torch.Tensor
        Ground truth, same shape.
    prior : callable | None
        The autoencoder ``Phi``.

    Returns
    -------
    loss : MetaLoss
        ``total``, ``ground_truth`` and ``prior`` terms, each (batch,).
    """
    if x_hat.shape != x_gt.shape:
        raise ValueError(
            f"x_hat {tuple(x_hat.shape)} and x_gt {tuple(x_gt.shape)} differ in shape."
        )
    gt_term = 1.0 - cosine_similarity(x_gt, x_hat)
    if prior is None:
        prior_term = torch.zeros_like(gt_term)
    else:
        z = normalize_sources(x_hat)
        prior_term = 1.0 - cosine_similarity(z, prior(z))
    return MetaLoss(gt_term + prior_term, gt_term, prior_term)


def denoising_loss(prior, x_gt, *, noise_level, generator=None):
    """Cosine denoising loss used to pretrain the autoencoder prior.

    Each clean sample gets white noise of relative level drawn uniformly in
    ``[0, noise_level]`` (ratio of noise RMS to signal RMS); the noisy sample
    is rescaled to unit RMS (the scale the energy feeds the prior, see
    :func:`mne_mmnet.solver.normalize_sources`) and the loss is
    ``1 - S_C(Phi(x_noisy), x_gt)``.

    Parameters
    ----------
    prior : torch.nn.Module
        The autoencoder.
    x_gt : torch.Tensor
        Clean sources, (batch, n_sources, n_times).
    noise_level : float
        Largest relative noise level.
    generator : torch.Generator | None
        Random generator on the device of ``x_gt``.

    Returns
    -------
    loss : torch.Tensor
        (batch,) losses.
    """
    batch = x_gt.shape[0]
    opts = dict(generator=generator, dtype=x_gt.dtype, device=x_gt.device)
    clean = normalize_sources(x_gt)  # unit RMS
    level = noise_level * torch.rand(batch, **opts)
    noisy = clean + level[:, None, None] * torch.randn(x_gt.shape, **opts)
    return 1.0 - cosine_similarity(prior(normalize_sources(noisy)), clean)
