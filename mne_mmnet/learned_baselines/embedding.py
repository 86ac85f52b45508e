"""Over-complete embedding solvers: OPTEnet and EUnet (Eliasof et al.).

The sources are written ``x = E z`` with a learned embedding ``E`` from a
larger space (``n_embed > n_sources`` channels per time sample), and
gradient steps run on ``z`` for the least-squares data term plus a learned
potential ``phi(z)``::

    z_{j+1} = z_j - h_j E_j' L' (L E_j z_j - y) - h_j grad phi(z_j; theta_j)

OPTEnet shares ``E`` and ``theta`` across steps (gradient descent on one
energy); EUnet lets both depend on the step through a time variable
``t_j = j / n_iter`` (an unrolled network, no longer the descent of one
energy). Both are adapted here to the EEG problem: ``L`` is the
average-referenced leadfield scaled to unit spectral norm, ``y`` is scaled
to unit RMS, the embedding starts as ``[I, 0]`` so that the start carries
over exactly, and convolutions of the potential run along time, so the
models are length agnostic.
"""

import math

import torch
from mne.utils import _validate_type
from torch import nn
from torch.nn import functional as F

from ..networks.base import LearnedSolver, check_config_keys, register_architecture
from ..solver import normalize_sources

_TINY = 1e-12


def log_cosh(t):
    """Integral of tanh, ``log(cosh(t))``, computed without overflow."""
    return t.abs() + F.softplus(-2.0 * t.abs()) - math.log(2.0)


def _scaled_problem(y, L):
    """Leadfield with unit spectral norm and data with unit RMS per sample."""
    L_unit = L / torch.linalg.matrix_norm(L.detach(), ord=2)
    rms = y.flatten(1).pow(2).mean(1).sqrt().clamp_min(_TINY)
    return y / rms[:, None, None], L_unit


class _Potential(nn.Module):
    """``phi(z) = sum q' log_cosh(K2 log_cosh(K1 z + c1 + t b1) + c2)`` (eq. 4.1).

    ``K1``, ``K2`` are temporal convolutions with biases ``c1``, ``c2``; the
    time embedding ``t b1`` exists for EUnet only.
    """

    def __init__(self, n_embed, hidden, kernel_size, time_dependent):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(n_embed, hidden[0], kernel_size, padding=pad)
        self.conv2 = nn.Conv1d(hidden[0], hidden[1], kernel_size, padding=pad)
        self.q = nn.Parameter(torch.full((hidden[1],), 1.0 / hidden[1]))
        self.time_embedding = (
            nn.Parameter(torch.zeros(hidden[0])) if time_dependent else None
        )

    def forward(self, z, t):
        a = self.conv1(z)
        if self.time_embedding is not None:
            a = a + t * self.time_embedding[:, None]
        a = self.conv2(log_cosh(a))
        return (self.q[:, None] * log_cosh(a)).sum((1, 2))


class _EmbeddingSolver(LearnedSolver):
    """Shared loop of OPTEnet and EUnet."""

    _keys = (
        "n_sources",
        "n_embed",
        "hidden",
        "kernel_size",
        "n_iter",
        "init",
        "init_step",
    )
    time_dependent = False

    def __init__(
        self,
        *,
        n_sources=994,
        n_embed=1250,
        hidden=(128, 64),
        kernel_size=3,
        n_iter=10,
        init="sloreta",
        init_step=0.5,
    ):
        super().__init__()
        _validate_type(n_iter, "int", "n_iter")
        if n_iter < 1:
            raise ValueError(f"n_iter must be >= 1, got {n_iter}.")
        _validate_type(n_sources, "int", "n_sources")
        _validate_type(n_embed, "int", "n_embed")
        if len(hidden) != 2:
            raise ValueError(
                f"hidden must hold the channels of the two convolutions of the "
                f"potential, e.g. (128, 64), got {hidden!r}."
            )
        _validate_type(kernel_size, "int", "kernel_size")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd and >= 1 (same-length convolutions), "
                f"got {kernel_size}."
            )
        if n_embed < n_sources:
            raise ValueError(
                f"n_embed must be >= n_sources ({n_sources}) for an over-complete "
                f"embedding, got {n_embed}."
            )
        if not init_step > 0:
            raise ValueError(f"init_step must be > 0, got {init_step}.")
        self.prior = None  # the learned potential acts on z, not on x
        self.n_sources = int(n_sources)
        self.n_embed = int(n_embed)
        self.hidden = tuple(int(h) for h in hidden)
        self.kernel_size = int(kernel_size)
        self.n_iter = int(n_iter)
        self.init = self._check_init(init)
        self.init_step = float(init_step)
        base = torch.zeros(self.n_sources, self.n_embed)
        base[:, : self.n_sources] = torch.eye(self.n_sources)
        self.embedding = nn.Parameter(base)  # E (or E(0) for EUnet)
        self.potential = _Potential(
            self.n_embed, self.hidden, self.kernel_size, self.time_dependent
        )
        self.log_step = nn.Parameter(torch.full((n_iter,), math.log(init_step)))

    @property
    def config(self):
        """JSON-serialisable dict that ``from_config`` rebuilds from."""
        return dict(
            architecture=self.architecture,
            n_sources=self.n_sources,
            n_embed=self.n_embed,
            hidden=list(self.hidden),
            kernel_size=self.kernel_size,
            n_iter=self.n_iter,
            init=self.init,
            init_step=self.init_step,
        )

    @classmethod
    def from_config(cls, config):
        """Build an untrained model from its ``config`` dict."""
        _validate_type(config, dict, "config")
        config = dict(config)
        config.pop("architecture", None)
        check_config_keys(config, cls._keys, cls.__name__)
        return cls(**config)

    def embedding_at(self, t):
        """Embedding matrix ``E(t)``, (n_sources, n_embed)."""
        return self.embedding

    def _embed(self, E, z):
        return torch.einsum("sk,bkt->bst", E, z)

    def iterate(self, x0, y, L, *, n_iter=None, create_graph=False, state=None):
        """Run embedded gradient steps; ``state`` is ``(z, step index)``.

        Returns ``(x, state, trace)``; ``x = E z`` at unit RMS and ``trace``
        holds the relative data misfit ``|L x - y| / |y|`` per iteration
        (``(n_iter + 1, batch)``, detached, in the scaled problem).
        """
        n_iter = self.n_iter if n_iter is None else int(n_iter)
        y_unit, L_unit = _scaled_problem(y, L)
        if state is None:
            # least-squares amplitude of the start, then z0 = E(0)' x0
            x0 = normalize_sources(x0)
            pred = torch.einsum("cs,bst->bct", L_unit, x0)
            amp = (pred * y_unit).sum((1, 2)) / pred.pow(2).sum((1, 2)).clamp_min(_TINY)
            z = torch.einsum(
                "sk,bst->bkt", self.embedding_at(0.0), amp[:, None, None] * x0
            )
            j0 = 0
        else:
            z, j0 = state
        misfits = []
        for j in range(j0, j0 + n_iter):
            t = j / self.n_iter
            E = self.embedding_at(t)
            LE = L_unit @ E
            residual = torch.einsum("ck,bkt->bct", LE, z) - y_unit
            misfits.append(residual.detach().flatten(1).norm(dim=1))
            data_grad = torch.einsum("ck,bct->bkt", LE, residual)
            with torch.enable_grad():
                z_in = (
                    z
                    if (create_graph and z.requires_grad)
                    else (z.detach().requires_grad_(True))
                )
                (prior_grad,) = torch.autograd.grad(
                    self.potential(z_in, t).sum(), z_in, create_graph=create_graph
                )
            if create_graph:
                z = z_in
            step = self.log_step[min(j, self.n_iter - 1)].exp()
            z = z - step * (data_grad + prior_grad)
        t = (j0 + n_iter) / self.n_iter
        x = self._embed(self.embedding_at(t), z)
        with torch.no_grad():
            residual = torch.einsum("cs,bst->bct", L_unit, x) - y_unit
            misfits.append(residual.flatten(1).norm(dim=1))
        norm_y = y_unit.flatten(1).norm(dim=1)
        trace = {"misfit": torch.stack(misfits) / norm_y}
        return normalize_sources(x), (z, j0 + n_iter), trace


@register_architecture("optenet")
class OPTEnet(_EmbeddingSolver):
    """OPTEnet: gradient descent in a learned over-complete embedding.

    After :footcite:t:`EliasofEtAl`.

    Parameters
    ----------
    n_sources : int
        Number of sources.
    n_embed : int
        Channels of the embedded variable ``z`` (``>= n_sources``).
    hidden : tuple of int
        Channels of the two convolutions of the potential ``phi``.
    kernel_size : int
        Temporal kernel of those convolutions.
    n_iter : int
        Unrolled steps.
    init : 'random' | 'mne' | 'sloreta'
        Start (lifted into the embedding by ``E'``).
    init_step : float
        Initial step ``h_j`` (learned per step).

    Notes
    -----
    One embedding ``E`` and one potential shared by all steps: the network is
    gradient descent on ``|L E z - y|^2 / 2 + phi(z)`` (eq. 3.7 of [1]).

    References
    ----------
    .. footbibliography::
    """


@register_architecture("eunet")
class EUnet(_EmbeddingSolver):
    """EUnet: unrolled embedded steps with step-dependent embedding and potential.

    After :footcite:t:`EliasofEtAl`.

    Parameters
    ----------
    n_sources, n_embed, hidden, kernel_size, n_iter, init, init_step
        As in :class:`OPTEnet`.
    embed_rank : int
        Rank of the step-dependent part of the embedding.

    Notes
    -----
    ``E(t) = E_0 + U diag(w(t)) V'`` with ``w(t) = W_2 tanh(t W_1 + c_1) + c_2``, a
    small network mapping the step time ``t`` to the embedding, and the
    potential gains a time embedding ``t b_1`` (eqs. 3.8, 4.1 of [1]). Step
    ``k`` uses ``E(k / n_iter)``; the estimate is read out through the
    embedding at the end time, ``x = E(1) z`` after ``n_iter`` steps.

    References
    ----------
    .. footbibliography::
    """

    _keys = _EmbeddingSolver._keys + ("embed_rank",)
    time_dependent = True

    def __init__(self, *, embed_rank=32, **kwargs):
        super().__init__(**kwargs)
        self.embed_rank = int(embed_rank)
        r = self.embed_rank
        self.embed_u = nn.Parameter(torch.randn(self.n_sources, r) / self.n_sources)
        self.embed_v = nn.Parameter(torch.randn(self.n_embed, r) / self.n_embed)
        self.time_in = nn.Linear(1, r)
        self.time_out = nn.Linear(r, r)
        with torch.no_grad():  # E(t) = E_0 at initialisation
            self.time_out.weight.zero_()
            self.time_out.bias.zero_()

    @property
    def config(self):
        """JSON-serialisable dict that ``from_config`` rebuilds from."""
        return dict(super().config, embed_rank=self.embed_rank)

    def embedding_at(self, t):
        """Embedding matrix ``E(t)``, (n_sources, n_embed)."""
        t = self.embedding.new_tensor([float(t)])
        w = self.time_out(torch.tanh(self.time_in(t)))
        return self.embedding + (self.embed_u * w) @ self.embed_v.T
