"""MM-Net: a learned prior and a learned curvature driving projected MM steps."""

import copy

import torch
from mne.utils import _check_option, _validate_type
from torch import nn

from ..solver import initial_estimate, mm_iterations
from ..solver.linear import INITS
from .autoencoder import SoftReLUAutoencoder
from .curvature import CurvatureModel

_CONFIG_VERSION = 1
_BOUNDS = ("analytic", "hvp", None)


def _module_config(module, name):
    config = getattr(module, "config", None)
    if config is None and isinstance(module, SoftReLUAutoencoder):
        config = dict(
            n_sources=module.n_sources,
            hidden=list(module.hidden),
            kernel_size=module.kernel_size,
            eps=module.eps,
        )
    if callable(config):
        config = config()
    if not isinstance(config, dict):
        raise TypeError(
            f"{name} must expose its constructor arguments as a dict attribute "
            f"'config' so that MMNet can be saved and rebuilt; {type(module)} "
            "does not."
        )
    return copy.deepcopy(config)


class _StatefulCurvature:
    """Wrap a curvature model to start from a given state and record the last.

    Calls are passed through unchanged (including ``nu_up=`` when the wrapped
    model accepts it), so MMNet's training path and
    :func:`mne_mmnet.solver.solve_mm` see the same model.
    """

    def __init__(self, curvature, state=None):
        self.curvature = curvature
        self.state = state
        self.accepts_bound = getattr(curvature, "accepts_bound", False)

    def init_state(self, x):
        if self.state is None:
            self.state = self.curvature.init_state(x)
        return self.state

    def __call__(self, g, x, state, **kwargs):
        p_tilde, state = self.curvature(g, x, state, **kwargs)
        self.state = state
        return p_tilde, state


class MMNet(nn.Module):
    """MM-Net: projected MM iterations with a learned prior and curvature.

    Parameters
    ----------
    prior : SoftReLUAutoencoder | dict | None
        The autoencoder prior ``Phi``, or the keyword arguments that build one,
        or None (no prior term).
    curvature : CurvatureModel | dict | None
        The learned curvature model, or its keyword arguments, or None (steps
        given by the bound alone).
    lam : float
        Weight of the prior term of the energy (paper: 1).
    gamma : float
        Relaxation of the MM step, in (0, 2) (paper: 1.999).
    bound : "analytic" | "hvp" | None
        Upper bound the learned step is projected onto (eq. 13): the
        closed-form bound of Proposition 1, the Hessian power iteration, or
        None for no projection (R-MM-Net).
    n_iter : int
        Default number of MM iterations (paper: 10).
    step : str
        Step structure passed to :func:`mne_mmnet.solver.mm_iterations`.
    init : "random" | "mne" | "sloreta"
        Default start, see :func:`mne_mmnet.solver.initial_estimate`.
    safeguard : bool
        Reject steps that would increase the energy (see
        :func:`mne_mmnet.solver.mm_iterations`).
    """

    def __init__(
        self,
        prior=None,
        curvature=None,
        *,
        lam=1.0,
        gamma=1.999,
        bound="analytic",
        n_iter=10,
        step="diagonal",
        init="random",
        safeguard=True,
    ):
        super().__init__()
        if isinstance(prior, dict):
            prior = SoftReLUAutoencoder(**prior)
        if isinstance(curvature, dict):
            curvature = CurvatureModel(**curvature)
        _validate_type(prior, (nn.Module, None), "prior")
        _validate_type(curvature, (nn.Module, None), "curvature")
        _validate_type(lam, "numeric", "lam")
        _validate_type(gamma, "numeric", "gamma")
        _validate_type(n_iter, "int", "n_iter")
        _check_option("bound", bound, _BOUNDS)
        _check_option("init", init, INITS)
        if not 0 < gamma < 2:
            raise ValueError(f"gamma must lie in (0, 2), got {gamma}.")
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}.")
        if n_iter < 1:
            raise ValueError(f"n_iter must be >= 1, got {n_iter}.")
        self.prior = prior
        self.curvature = curvature
        self.lam = float(lam)
        self.gamma = float(gamma)
        self.bound = bound
        self.n_iter = int(n_iter)
        self.step = step
        self.init = init
        self.safeguard = bool(safeguard)

    @property
    def n_sources(self):
        """Number of sources the networks were built for (or None)."""
        for module in (self.curvature, self.prior):
            if module is not None:
                try:
                    n_sources = _module_config(module, "module").get("n_sources")
                except TypeError:  # a custom module without config
                    continue
                if n_sources is not None:
                    return int(n_sources)
        return None

    @property
    def config(self):
        """JSON-serialisable dict that :meth:`from_config` rebuilds from."""
        return dict(
            version=_CONFIG_VERSION,
            prior=None if self.prior is None else _module_config(self.prior, "prior"),
            curvature=None
            if self.curvature is None
            else _module_config(self.curvature, "curvature"),
            lam=self.lam,
            gamma=self.gamma,
            bound=self.bound,
            n_iter=self.n_iter,
            step=self.step,
            init=self.init,
            safeguard=self.safeguard,
        )

    @classmethod
    def from_config(cls, config):
        """Build an (untrained) MM-Net from :attr:`config`.

        Parameters
        ----------
        config : dict
            As returned by :attr:`config`.

        Returns
        -------
        model : MMNet
            A new model with freshly initialised weights.
        """
        _validate_type(config, dict, "config")
        config = copy.deepcopy(config)
        version = config.pop("version", _CONFIG_VERSION)
        if version != _CONFIG_VERSION:
            raise ValueError(
                f"MMNet config version {version} is not supported by this version "
                f"of mne-mmnet (expected {_CONFIG_VERSION}); upgrade mne-mmnet."
            )
        known = {
            "prior",
            "curvature",
            "lam",
            "gamma",
            "bound",
            "n_iter",
            "step",
            "init",
            "safeguard",
        }
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"Unknown MMNet config keys {unknown}; known {sorted(known)}."
            )
        return cls(config.pop("prior", None), config.pop("curvature", None), **config)

    def initial_estimate(self, y, L, *, init=None, seed=None):
        """Start of the iterations, see :func:`mne_mmnet.solver.initial_estimate`."""
        init = self.init if init is None else init
        return initial_estimate(y, L, init=init, seed=seed)

    def iterate(self, x0, y, L, *, n_iter=None, create_graph=False, state=None):
        """Run MM iterations from ``x0``, optionally continuing a curvature state.

        Returns
        -------
        x : torch.Tensor
            Last iterate.
        state : object | None
            Curvature state after the last iteration (None without curvature).
        trace : dict
            The trace returned by :func:`mne_mmnet.solver.mm_iterations`.
        """
        n_iter = self.n_iter if n_iter is None else int(n_iter)
        curvature = None
        if self.curvature is not None:
            curvature = _StatefulCurvature(self.curvature, state)
        x, trace = mm_iterations(
            x0,
            y,
            L,
            prior=self.prior,
            curvature=curvature,
            n_iter=n_iter,
            gamma=self.gamma,
            bound=self.bound,
            step=self.step,
            lam=self.lam,
            create_graph=create_graph,
            safeguard=self.safeguard,
        )
        return x, None if curvature is None else curvature.state, trace

    def forward(
        self,
        y,
        L,
        *,
        n_iter=None,
        x0=None,
        seed=None,
        create_graph=None,
        return_trace=False,
    ):
        """Estimate sources from data.

        Parameters
        ----------
        y : torch.Tensor
            Data, (batch, n_channels, n_times), average referenced like ``L``.
        L : torch.Tensor
            Leadfield, (n_channels, n_sources).
        n_iter : int | None
            Number of MM iterations (default :attr:`n_iter`).
        x0 : torch.Tensor | None
            Start; by default drawn per :attr:`init` with ``seed``.
        seed : None | int | np.random.Generator | torch.Generator
            Seed of the random start.
        create_graph : bool | None
            Keep the graph through the energy gradients (needed to train
            through the iterations). Default: in training mode with gradients
            enabled.
        return_trace : bool
            Also return the solver's trace.

        Returns
        -------
        x : torch.Tensor
            (batch, n_sources, n_times).
        trace : dict
            Only when ``return_trace``.
        """
        _validate_type(y, torch.Tensor, "y")
        _validate_type(L, torch.Tensor, "L")
        if y.ndim != 3 or L.ndim != 2 or y.shape[1] != L.shape[0]:
            raise ValueError(
                "y must be (batch, n_channels, n_times) and L (n_channels, "
                f"n_sources) with matching n_channels, got {tuple(y.shape)} and "
                f"{tuple(L.shape)}."
            )
        if x0 is None:
            x0 = self.initial_estimate(y, L, seed=seed)
        if create_graph is None:
            create_graph = self.training and torch.is_grad_enabled()
        x, _, trace = self.iterate(x0, y, L, n_iter=n_iter, create_graph=create_graph)
        return (x, trace) if return_trace else x
