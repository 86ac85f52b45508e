"""A learned gate between two starts of the MM iterations.

The prior's output at the sLORETA estimate is a strong start for extended
patches, but it moves the peak of a focal (single-region) source to a
neighbouring region, where a sparse estimate (the default model's: the
RAP-MUSIC scan of :func:`mne_mmnet.solver.subspace.subspace_scan`) is nearly
exact. The gate looks at both starts and at how well each explains the
data, and returns the weight ``g`` of the first start ``s`` in
``g * s + (1 - g) * Phi``, ``Phi`` the prior's output (written ``Phi(s)`` in
the feature names).

Every feature is even in the data (and so in ``s`` and ``Phi(s)``, which are
odd in it): the gate is sign-invariant and the start stays sign-equivariant.
No feature compares the time course of ``Phi(s)`` with the data's as a whole:
the prior smooths bursts a few samples wide, which in short windows made such a
feature read a good start as a failed one (version 1 of the features).
"""

import math

import torch
from mne.utils import _validate_type
from torch import nn

from ..solver.subspace import signal_subspace
from ..utils import _torch_generator

#: names of the features of :func:`mne_mmnet.networks.start_features`, in order
FEATURE_NAMES = (
    "log spread of s",
    "log spread of Phi(s)",
    "peak share of s",
    "peak share of Phi(s)",
    "fit of s at the peak time",
    "fit of Phi(s) at the peak time",
    "fit of the region at the peak of s, peak time",
    "fit of the region at the peak of Phi(s), peak time",
    "fit of the best single region, peak time",
    "Phi(s) at the peak of s",
    "s at the peak of Phi(s)",
    "channels / 90 (the template's count)",
    "fit of the map of s, all times",
    "fit of the map of Phi(s), all times",
    "fit of the region at the peak of s, all times",
    "fit of the region at the peak of Phi(s), all times",
    "fit of the best single region, all times",
    "log ratio of the two single-region fits",
    "log ratio of the single-region fit and the fit of Phi(s)",
    "first singular value share of the data",
    "second singular value share of the data",
    "third singular value share of the data",
    "fit of the region at the peak of s, signal subspace",
    "fit of the region at the peak of Phi(s), signal subspace",
    "fit of the best single region, signal subspace",
    "fit of s, signal subspace, all times",
    "fit of Phi(s), one scale per time, signal subspace",
    "fit of the span of the fields of Phi(s), signal subspace",
    "signal patterns kept / 8 (at most 1)",
    "share of the data in the signal subspace",
)
_TINY = 1e-30
#: version of the features of :func:`mne_mmnet.networks.start_features`; a
#: gate records the version it was fitted on (version 2: the fit of ``Phi(s)``
#: to the signal subspace no longer takes one scale for all times; it is
#: measured with one scale per time and by the span of its leading fields)
FEATURES_VERSION = 2


def _spread(v):
    """Participation ratio of ``v`` (batch, n) over ``n``: 1/n (one) .. 1 (flat)."""
    v2 = v**2
    return v2.sum(1) ** 2 / ((v2**2).sum(1) + _TINY) / v.shape[1]


def _abs_cos(a, b):
    return (a * b).sum(1).abs() / (a.norm(dim=1) * b.norm(dim=1) + _TINY)


def _explained(pattern, y):
    """Share of ``||y||^2`` explained by one spatial pattern (batch, n_ch)."""
    unit = pattern / (pattern.norm(dim=1, keepdim=True) + _TINY)
    return (torch.einsum("bc,bct->bt", unit, y) ** 2).sum(1) / (
        (y**2).sum((1, 2)) + _TINY
    )


def _fit_space_time(x, L, y):
    """Share of ``||y||^2`` explained by the field of ``x`` (one global scale)."""
    field = torch.einsum("cn,bnt->bct", L, x)
    inner = (field * y).sum((1, 2))
    return inner**2 / ((field**2).sum((1, 2)) * (y**2).sum((1, 2)) + _TINY)


def _fit_time_by_time(field, y):
    """Share of ``||y||^2`` explained by ``field``, one scale per time."""
    inner = (field * y).sum(1)
    explained = (inner**2 / ((field**2).sum(1) + _TINY)).sum(1)
    return explained / ((y**2).sum((1, 2)) + _TINY)


def _fit_of_span(field, y, rank):
    """Share of ``||y||^2`` in the span of the ``rank`` leading patterns of ``field``.

    The leading left singular vectors of ``field`` (batch, n_ch, n_times),
    ``rank`` (batch,) of them (at least one), those of numerically zero
    singular values left out (their directions are arbitrary, as
    :func:`torch.linalg.matrix_rank` decides): no time course enters.
    """
    u, sv, _ = torch.linalg.svd(field, full_matrices=False)
    order = torch.arange(u.shape[2], device=u.device)
    tol = max(field.shape[1:]) * torch.finfo(sv.dtype).eps * sv[:, :1]
    keep = (order[None, :] < rank.clamp_min(1)[:, None]) & (sv > tol)
    keep = keep.to(y.dtype)
    inside = (torch.einsum("bck,bct->bkt", u, y) ** 2).sum(2)
    return (inside * keep).sum(1) / ((y**2).sum((1, 2)) + _TINY)


def _subspace_features(s, p, y, L, columns, i_s, i_p, subspace):
    """Return the features of the data's signal subspace (see ``FEATURE_NAMES``)."""
    rows = torch.arange(len(s), device=s.device)
    if subspace is None:
        subspace = signal_subspace(y, return_rank=True)
    y_sig, rank = subspace[0].to(y.dtype), subspace[1]
    field_p = torch.einsum("cn,bnt->bct", L, p)
    power = (y_sig**2).sum((1, 2))
    single = (torch.einsum("cn,bct->bnt", columns, y_sig) ** 2).sum(2)
    single = single / (power[:, None] + _TINY)
    return [
        single[rows, i_s],
        single[rows, i_p],
        single.amax(1),
        _fit_space_time(s, L, y_sig),
        _fit_time_by_time(field_p, y_sig),
        _fit_of_span(field_p, y_sig, rank),
        rank.to(s.dtype).clamp(max=8) / 8,
        power / ((y**2).sum((1, 2)) + _TINY),
    ]


def start_features(s, p, y, L, *, subspace=None):
    """Sign-invariant features of two starts and the data they should explain.

    Parameters
    ----------
    s : torch.Tensor, shape (batch, n_sources, n_times)
        First start at unit RMS (the default model's: the sparse estimate of
        :func:`~mne_mmnet.solver.subspace.subspace_scan`).
    p : torch.Tensor, shape (batch, n_sources, n_times)
        The prior's output (at the sLORETA estimate of the data).
    y : torch.Tensor, shape (batch, n_channels, n_times)
        Referenced data.
    L : torch.Tensor, shape (n_channels, n_sources)
        Leadfield, referenced like ``y``.
    subspace : tuple of torch.Tensor | None
        ``signal_subspace(y, return_rank=True)`` if already computed (as
        :func:`~mne_mmnet.solver.subspace.subspace_scan` returns it); ``None``
        computes it.

    Returns
    -------
    features : torch.Tensor, shape (batch, n_features)
        The ``n_features = len(mne_mmnet.networks.gate.FEATURE_NAMES)``
        features named there. The peak time is
        that of the largest power of ``s``; spreads are participation
        ratios, fits are shares of the data's squared norm explained by one
        spatial pattern (or, "all times", by a map's whole field with one
        scale; "one scale per time": its field at each time; "span": the
        leading spatial patterns of its field, as many as the signal
        subspace keeps, whatever their time courses); "signal
        subspace" features use the projection of the data of
        :func:`~mne_mmnet.solver.subspace.signal_subspace`.
    """
    rows = torch.arange(len(s), device=s.device)
    t_peak = (s**2).sum(1).argmax(1)
    s_t, p_t, y_t = s[rows, :, t_peak], p[rows, :, t_peak], y[rows, :, t_peak]
    columns = L / (L.norm(dim=0, keepdim=True) + _TINY)
    at_peak = (y_t @ columns).abs() / (y_t.norm(dim=1, keepdim=True) + _TINY)
    all_times = (torch.einsum("cn,bct->bnt", columns, y) ** 2).sum(2) / (
        (y**2).sum((1, 2))[:, None] + _TINY
    )
    i_s, i_p = s_t.abs().argmax(1), p_t.abs().argmax(1)
    single_s, single_p = all_times[rows, i_s], all_times[rows, i_p]
    field_s, field_p = s_t @ L.T, p_t @ L.T  # each map's scalp field
    fit_p = _explained(field_p, y)
    shares = torch.linalg.svdvals(y) ** 2
    shares = shares / (shares.sum(1, keepdim=True) + _TINY)
    shares = torch.cat([shares, shares.new_zeros(len(s), 3)], 1)[:, :3]
    s_peak, p_peak = s_t.abs().amax(1), p_t.abs().amax(1)
    return torch.stack(
        [
            _spread(s_t).clamp_min(_TINY).log(),
            _spread(p_t).clamp_min(_TINY).log(),
            s_peak / (s_t.norm(dim=1) + _TINY),
            p_peak / (p_t.norm(dim=1) + _TINY),
            _abs_cos(field_s, y_t),
            _abs_cos(field_p, y_t),
            at_peak[rows, i_s],
            at_peak[rows, i_p],
            at_peak.amax(1),
            p_t.abs()[rows, i_s] / (p_peak + _TINY),
            s_t.abs()[rows, i_p] / (s_peak + _TINY),
            torch.full_like(s_peak, L.shape[0] / 90.0),
            _explained(field_s, y),
            fit_p,
            single_s,
            single_p,
            all_times.amax(1),
            (single_s.clamp_min(_TINY) / single_p.clamp_min(_TINY)).log(),
            (single_s.clamp_min(_TINY) / fit_p.clamp_min(_TINY)).log(),
            *shares.unbind(1),
            *_subspace_features(s, p, y, L, columns, i_s, i_p, subspace),
        ],
        1,
    )


class StartGate(nn.Module):
    """Weight of the first start in the mixture, from the features of both starts.

    Parameters
    ----------
    hidden : tuple of int
        Widths of the hidden layers of the multilayer perceptron.
    features : int
        Version of the features the gate reads (``FEATURES_VERSION``, the
        only one this version of mne-mmnet computes).
    seed : int | None
        Seed of the weight initialisation (``None``: torch's global RNG).

    Notes
    -----
    ``g = sigmoid(MLP((f - mean) / scale))`` with the features ``f`` of
    :func:`mne_mmnet.networks.start_features`; ``mean`` and ``scale`` are
    buffers set from the training features (:meth:`set_standardization`). The start
    ``g s + (1 - g) Phi(s)`` is sign-equivariant because ``g`` is
    sign-invariant. See :func:`mne_mmnet.training.gate.fit_start_gate`.
    """

    def __init__(self, hidden=(32, 32), *, features=FEATURES_VERSION, seed=None):
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden must hold sizes >= 1, got {hidden}.")
        if features != FEATURES_VERSION:
            raise ValueError(
                f"This start gate reads version {features} of the start "
                f"features; this mne-mmnet computes version {FEATURES_VERSION}. "
                "Refit the gate (tools/train_gate.py) or load the model with "
                "the mne-mmnet release it was fitted with."
            )
        self.hidden = hidden
        n_features = len(FEATURE_NAMES)
        sizes = (n_features, *hidden, 1)
        layers = []
        for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if k < len(sizes) - 2:
                layers.append(nn.Tanh())
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        if seed is not None:
            generator = _torch_generator(seed)
            with torch.no_grad():
                for layer in self.mlp:
                    if isinstance(layer, nn.Linear):
                        bound = 1.0 / math.sqrt(layer.in_features)
                        layer.weight.uniform_(-bound, bound, generator=generator)
                        layer.bias.uniform_(-bound, bound, generator=generator)

    @property
    def config(self):
        """Constructor arguments (saved with the model)."""
        return dict(hidden=list(self.hidden), features=FEATURES_VERSION)

    @torch.no_grad()
    def set_standardization(self, features):
        """Centre and scale the inputs on ``features`` (n, n_features)."""
        _validate_type(features, torch.Tensor, "features")
        self.mean.copy_(features.mean(0))
        self.scale.copy_(features.std(0).clamp_min(1e-6))

    def logit(self, features):
        """Return the logit of ``g`` for precomputed features (n, n_features)."""
        return self.mlp((features - self.mean) / self.scale)[:, 0]

    def forward(self, s, p, y, L, *, subspace=None):
        """Return ``g`` (batch,) in (0, 1) for the starts ``s`` and ``p``.

        ``subspace``: see :func:`mne_mmnet.networks.start_features`.
        """
        features = start_features(s, p, y, L, subspace=subspace)
        return torch.sigmoid(self.logit(features))
