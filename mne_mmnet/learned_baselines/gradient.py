"""Learned gradient-descent solvers: 4DVarNet, Meta-Curvature, ModGrad.

All three minimise the same lower-level energy as MM-Net (cosine data term
plus ``lam`` times the autoencoder prior term, :func:`mne_mmnet.solver.energy`)
from the same start, and differ only in how the gradient becomes an update:

* :class:`FourDVarNet` (Fablet et al. 2021): a ConvLSTM reads the gradient
  and writes the update, its memory carried across iterations;
* :class:`MetaCurvatureSolver` (Park & Oliva 2019): a Kronecker-factored
  learned preconditioner, ``M_sources @ g @ M_time.T``;
* :class:`ModGradSolver` (Simon et al. 2020): an element-wise modulation of
  the gradient generated from the gradient by a low-rank network.

None of the updates is checked against a curvature bound: nothing guarantees
that the energy decreases (the trace records it). Meta-Curvature and ModGrad
act on the whole time axis with dense learned maps, so a model only runs on
the number of time samples it was built for (the MM-Net paper excludes them
from its cross-domain rows for that reason).
"""

import math

import torch
from mne.utils import _validate_type
from torch import nn

from ..networks.autoencoder import SoftReLUAutoencoder
from ..networks.base import LearnedSolver, check_config_keys, register_architecture
from ..networks.curvature import ConvLSTMCell1d
from ..solver import normalize_sources
from ..solver.objective import _energy_and_grad

_TINY = 1e-12


def _unit_rms(t):
    """Rescale each sample of a (batch, ...) tensor to unit RMS (0 stays 0)."""
    rms = t.flatten(1).pow(2).mean(1).sqrt().clamp_min(_TINY)
    return t / rms.view(-1, *([1] * (t.ndim - 1)))


class _GradientSolver(LearnedSolver):
    """Shared loop: ``x <- unit_rms(x - step_k * update(g_k / rms(g_k)))``.

    Subclasses implement ``_init_memory(x)`` and
    ``_update(g_unit, x, memory) -> (update, memory)``.
    """

    _common_keys = ("prior", "lam", "n_iter", "init", "n_sources", "init_step")

    def __init__(self, prior, *, n_sources, lam, n_iter, init, init_step):
        super().__init__()
        if isinstance(prior, dict):
            prior = SoftReLUAutoencoder(**prior)
        _validate_type(prior, (SoftReLUAutoencoder, None), "prior")
        if prior is not None and prior.n_sources != n_sources:
            raise ValueError(
                f"The prior was built for {prior.n_sources} sources, the solver "
                f"for n_sources={n_sources}; build both for the same number."
            )
        _validate_type(n_iter, "int", "n_iter")
        if n_iter < 1:
            raise ValueError(f"n_iter must be >= 1, got {n_iter}.")
        if not init_step > 0:
            raise ValueError(f"init_step must be > 0, got {init_step}.")
        self.prior = prior
        self.n_sources = int(n_sources)
        self.lam = float(lam)
        self.n_iter = int(n_iter)
        self.init = self._check_init(init)
        self.init_step = float(init_step)
        # one learned step length per iteration (log scale, kept positive);
        # iterations beyond n_iter reuse the last one
        self.log_step = nn.Parameter(torch.full((n_iter,), math.log(init_step)))

    def _common_config(self):
        prior = None
        if self.prior is not None:
            prior = dict(
                n_sources=self.prior.n_sources,
                hidden=list(self.prior.hidden),
                kernel_size=self.prior.kernel_size,
                eps=self.prior.eps,
            )
        return dict(
            architecture=self.architecture,
            prior=prior,
            n_sources=self.n_sources,
            lam=self.lam,
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
        check_config_keys(config, cls._common_keys + cls._own_keys, cls.__name__)
        return cls(config.pop("prior", None), **config)

    def iterate(self, x0, y, L, *, n_iter=None, create_graph=False, state=None):
        """Run gradient iterations; ``state`` is ``(memory, iteration index)``.

        Returns ``(x, state, trace)`` with ``trace`` a dict of the energy
        terms per iteration (``total``, ``fidelity``, ``prior``; each
        ``(n_iter + 1, batch)``, detached).
        """
        n_iter = self.n_iter if n_iter is None else int(n_iter)
        x = normalize_sources(x0)
        memory, k0 = (self._init_memory(x), 0) if state is None else state
        energies = []
        for k in range(k0, k0 + n_iter):
            terms, grad, _, x_in = _energy_and_grad(
                x, y, L, self.prior, self.lam, create_graph=create_graph,
                keep_prior_state=False,
            )  # fmt: skip
            if create_graph:
                x = x_in
            energies.append(terms)
            update, memory = self._update(_unit_rms(grad), x, memory)
            step = self.log_step[min(k, self.n_iter - 1)].exp()
            x = normalize_sources(x - step * update)
        with torch.no_grad():
            terms, _, _, _ = _energy_and_grad(x, y, L, self.prior, self.lam)
        energies.append(terms)
        trace = {
            key: torch.stack([getattr(t, key).detach() for t in energies])
            for key in ("total", "fidelity", "prior")
        }
        return x, (memory, k0 + n_iter), trace


@register_architecture("4dvarnet")
class FourDVarNet(_GradientSolver):
    """4DVarNet-style solver: a ConvLSTM turns energy gradients into updates.

    After :footcite:t:`FabletEtAl2021`.

    Parameters
    ----------
    prior : SoftReLUAutoencoder | dict | None
        The autoencoder prior of the energy (same family as MM-Net's).
    n_sources : int
        Number of sources.
    hidden : int
        Channels of the ConvLSTM state.
    kernel_size : int
        Temporal kernel of the ConvLSTM gates (odd).
    lam : float
        Weight of the prior term of the energy.
    n_iter : int
        Unrolled iterations.
    init : 'random' | 'mne' | 'sloreta'
        Start of the iterations.
    init_step : float
        Initial step length (per iteration, learned).

    Notes
    -----
    Iteration ``k`` feeds the unit-RMS gradient ``g_k / rms(g_k)`` of the
    energy at the unit-RMS iterate to the ConvLSTM cell (state carried across
    iterations, recurrence over iterations, not time) and takes
    ``x_{k+1} = x_k - s_k W h_k`` (rescaled to unit RMS) with a 1x1
    convolution ``W`` and a learned step ``s_k``; like the solver of Fablet
    et al. (2021) it is length agnostic. Unlike theirs, the energy is
    MM-Net's cosine energy, so that both solvers minimise the same objective.

    References
    ----------
    .. footbibliography::
    """

    _own_keys = ("hidden", "kernel_size")

    def __init__(
        self,
        prior=None,
        *,
        n_sources=994,
        hidden=64,
        kernel_size=3,
        lam=1.0,
        n_iter=10,
        init="sloreta",
        init_step=0.1,
    ):
        super().__init__(
            prior, n_sources=n_sources, lam=lam, n_iter=n_iter, init=init,
            init_step=init_step,
        )  # fmt: skip
        self.hidden = int(hidden)
        self.kernel_size = int(kernel_size)
        self.cell = ConvLSTMCell1d(self.n_sources, self.hidden, self.kernel_size)
        self.decode = nn.Conv1d(self.hidden, self.n_sources, 1)

    @property
    def config(self):
        """JSON-serialisable dict that ``from_config`` rebuilds from."""
        return dict(
            self._common_config(), hidden=self.hidden, kernel_size=self.kernel_size
        )

    def _init_memory(self, x):
        return self.cell.init_state(x)

    def _update(self, g_unit, x, memory):
        h, memory = self.cell(g_unit, memory)
        return self.decode(h), memory


class _FixedLengthSolver(_GradientSolver):
    """A gradient solver whose learned map spans a fixed number of samples."""

    def __init__(self, prior, *, n_times, **kwargs):
        super().__init__(prior, **kwargs)
        _validate_type(n_times, "int", "n_times")
        if n_times < 1:
            raise ValueError(f"n_times must be >= 1, got {n_times}.")
        self.n_times = int(n_times)
        self.fixed_n_times = self.n_times

    def _init_memory(self, x):
        if x.shape[-1] != self.n_times:
            raise ValueError(
                f"{type(self).__name__} was built for {self.n_times} time samples, "
                f"got {x.shape[-1]}."
            )
        return None


@register_architecture("meta-curvature")
class MetaCurvatureSolver(_FixedLengthSolver):
    """Gradient descent with a learned Kronecker-factored preconditioner.

    After :footcite:t:`ParkOliva2019`.

    Parameters
    ----------
    prior : SoftReLUAutoencoder | dict | None
        The autoencoder prior of the energy.
    n_sources : int
        Number of sources.
    n_times : int
        Number of time samples (fixed: the time factor is ``n_times**2``).
    lam, n_iter, init, init_step
        As in :class:`FourDVarNet`.

    Notes
    -----
    The update is ``s_k * M_s G_k M_t'`` for the unit-RMS gradient matrix
    ``G_k`` (sources x time), with learned ``M_s`` (sources x sources) and
    ``M_t`` (time x time), both starting at the identity, shared across
    iterations: the matrix form of the tensor-product meta-curvature of Park
    & Oliva (2019) placed in plain gradient descent, as in the MM-Net paper's
    comparison.

    References
    ----------
    .. footbibliography::
    """

    _own_keys = ("n_times",)

    def __init__(
        self,
        prior=None,
        *,
        n_sources=994,
        n_times=64,
        lam=1.0,
        n_iter=10,
        init="sloreta",
        init_step=0.1,
    ):
        super().__init__(
            prior, n_times=n_times, n_sources=n_sources, lam=lam, n_iter=n_iter,
            init=init, init_step=init_step,
        )  # fmt: skip
        self.source_factor = nn.Parameter(torch.eye(self.n_sources))
        self.time_factor = nn.Parameter(torch.eye(self.n_times))

    @property
    def config(self):
        """JSON-serialisable dict that ``from_config`` rebuilds from."""
        return dict(self._common_config(), n_times=self.n_times)

    def _update(self, g_unit, x, memory):
        update = torch.matmul(self.source_factor, g_unit)
        return torch.matmul(update, self.time_factor.T), memory


@register_architecture("modgrad")
class ModGradSolver(_FixedLengthSolver):
    """Gradient descent with a learned element-wise gradient modulation.

    After :footcite:t:`SimonEtAl2020`.

    Parameters
    ----------
    prior : SoftReLUAutoencoder | dict | None
        The autoencoder prior of the energy.
    n_sources : int
        Number of sources.
    n_times : int
        Number of time samples (fixed: the modulation network reads and
        writes the whole gradient matrix).
    rank : int
        Width of the bottleneck of the modulation network.
    lam, n_iter, init, init_step
        As in :class:`FourDVarNet`.

    Notes
    -----
    The update is ``s_k * (1 + tanh(U relu(V vec(G_k) + b) + c)) * G_k``: a
    rank-``rank`` network maps the unit-RMS gradient to a modulation of each
    of its entries (in (0, 2), 1 at initialisation, where ``U = 0``), after the
    gradient modulation of Simon et al. (2020) placed in plain gradient
    descent. Its size grows with ``n_sources * n_times``.

    References
    ----------
    .. footbibliography::
    """

    _own_keys = ("n_times", "rank")

    def __init__(
        self,
        prior=None,
        *,
        n_sources=994,
        n_times=64,
        rank=8,
        lam=1.0,
        n_iter=10,
        init="sloreta",
        init_step=0.1,
    ):
        super().__init__(
            prior, n_times=n_times, n_sources=n_sources, lam=lam, n_iter=n_iter,
            init=init, init_step=init_step,
        )  # fmt: skip
        self.rank = int(rank)
        size = self.n_sources * self.n_times
        self.reduce = nn.Linear(size, self.rank)
        self.expand = nn.Linear(self.rank, size)
        with torch.no_grad():  # start as plain gradient descent
            self.expand.weight.zero_()
            self.expand.bias.zero_()

    @property
    def config(self):
        """JSON-serialisable dict that ``from_config`` rebuilds from."""
        return dict(self._common_config(), n_times=self.n_times, rank=self.rank)

    def _update(self, g_unit, x, memory):
        code = torch.relu(self.reduce(g_unit.flatten(1)))
        modulation = 1.0 + torch.tanh(self.expand(code)).view_as(g_unit)
        return modulation * g_unit, memory
