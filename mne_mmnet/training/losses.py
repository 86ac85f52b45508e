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


def peak_localization_loss(x_hat, x_gt, seeds, *, n_left=None, sharpness=20.0):
    """Cross-entropy that puts the estimate's peak where the true patch is.

    A differentiable surrogate of the global localisation error
    (:func:`mne_mmnet.metrics.global_localization_error`): for each seed
    ``s`` of a sample, at its peak time ``t_s = argmax_t |x_gt[s, t]|`` and
    over the seed's hemisphere, the map ``m = |x_hat[:, t_s]| / max |x_hat[:,
    t_s]|`` gives a distribution ``softmax(sharpness * m)`` over sources; the
    loss is its cross-entropy with the true activity ``|x_gt[:, t_s]|``
    normalised to sum 1. It falls as the largest estimates move into the
    patch, whatever their scale (sign and amplitude are ignored).

    Parameters
    ----------
    x_hat, x_gt : torch.Tensor, shape (batch, n_sources, n_times)
        Estimate and ground truth.
    seeds : array of int, shape (batch, max_seeds)
        Patch centres, padded with -1 (``Simulation.seeds``).
    n_left : int | None
        Left-hemisphere sources (they come first); None: half of them.
    sharpness : float
        Inverse temperature of the softmax on the max-normalised map.

    Returns
    -------
    loss : torch.Tensor, shape (batch,)
        Mean over each sample's seeds.
    """
    if x_hat.shape != x_gt.shape:
        raise ValueError(
            f"x_hat {tuple(x_hat.shape)} and x_gt {tuple(x_gt.shape)} differ in shape."
        )
    n_sources = x_hat.shape[1]
    n_left = n_sources // 2 if n_left is None else int(n_left)
    seeds = torch.as_tensor(seeds).reshape(len(x_hat), -1)
    losses = []
    for k in range(len(x_hat)):
        terms = []
        for s in seeds[k][seeds[k] >= 0].tolist():
            hemi = slice(0, n_left) if s < n_left else slice(n_left, n_sources)
            t_s = int(x_gt[k, s].abs().argmax())
            truth = x_gt[k, hemi, t_s].abs()
            target = truth / truth.sum().clamp_min(torch.finfo(truth.dtype).tiny)
            est = x_hat[k, hemi, t_s].abs()
            est = est / est.max().clamp_min(1e-12)  # unit-RMS inputs: max ~ 1
            log_p = torch.log_softmax(sharpness * est, dim=0)
            terms.append(-(target * log_p).sum())
        losses.append(torch.stack(terms).mean() if terms else x_hat.new_zeros(()))
    return torch.stack(losses)
