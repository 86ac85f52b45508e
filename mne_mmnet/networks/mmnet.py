"""MM-Net: a learned prior and a learned curvature driving projected MM steps."""

import copy

from mne.utils import _check_option, _validate_type
from torch import nn

from ..solver import mm_iterations
from ..solver.linear import INITS
from ..solver.precondition import PRECONDITIONERS
from .autoencoder import SoftReLUAutoencoder
from .base import LearnedSolver, check_config_keys, register_architecture
from .curvature import CurvatureModel
from .gate import StartGate

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
            odd=module.odd,
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


@register_architecture("mmnet")
class MMNet(LearnedSolver):
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
        Relaxation of the step, in (0, 2) (paper: 1.999 with its diagonal
        step; 1 with the directional step of the shipped models).
    bound : "analytic" | "hvp" | None
        Upper bound the learned step is projected onto (eq. 13): the
        closed-form bound of Proposition 1, the Hessian power iteration, or
        None for no projection (R-MM-Net).
    n_iter : int
        Default number of MM iterations (paper: 10).
    step : str
        Step structure passed to :func:`mne_mmnet.solver.mm_iterations`.
    init : "random" | "mne" | "sloreta" | "prior" | "gated"
        Default start, see :func:`mne_mmnet.solver.initial_estimate` (the
        paper starts at random; the Table I replicas from sLORETA, the
        default model from the gated mixture of sLORETA and the prior
        applied to it).
    safeguard : bool
        Reject steps that would increase the energy (see
        :func:`mne_mmnet.solver.mm_iterations`).
    guarantee : "checked" | "certified"
        ``"certified"`` shortens every step to the minimiser of a majorant
        valid on its segment, so that each step is a majorization-minimization
        step; ``"checked"`` takes the learned step when its energy does not
        rise (see :func:`mne_mmnet.solver.mm_iterations`).
    preconditioner : "diagonal" | "leadfield"
        Step metric built from the projected curvature: ``diag(p)`` (paper)
        or a weighted minimum-norm operator that mixes sources through the
        leadfield, with eigenvalues at most the bound (see
        :mod:`mne_mmnet.solver.precondition`).
    preconditioner_reg : float
        Relative regularisation of the ``"leadfield"`` preconditioner.
    gate : StartGate | dict | None
        The learned weight of the sLORETA estimate in the start, for
        ``init="gated"`` (see :class:`~mne_mmnet.networks.StartGate`), or its
        keyword arguments, or None.
    """

    def __init__(
        self,
        prior=None,
        curvature=None,
        *,
        lam=1.0,
        gamma=1.0,
        bound="analytic",
        n_iter=10,
        step="directional",
        init="sloreta",
        safeguard=True,
        guarantee="checked",
        preconditioner="diagonal",
        preconditioner_reg=0.1,
        gate=None,
    ):
        super().__init__()
        if isinstance(prior, dict):
            prior = SoftReLUAutoencoder(**prior)
        if isinstance(curvature, dict):
            curvature = CurvatureModel(**curvature)
        if isinstance(gate, dict):
            gate = StartGate(**gate)
        _validate_type(gate, (StartGate, None), "gate")
        if init == "gated" and (gate is None or prior is None):
            raise ValueError(
                "init='gated' needs a prior and a start gate (prior=, gate=)."
            )
        _validate_type(prior, (nn.Module, None), "prior")
        _validate_type(curvature, (nn.Module, None), "curvature")
        _validate_type(lam, "numeric", "lam")
        _validate_type(gamma, "numeric", "gamma")
        _validate_type(n_iter, "int", "n_iter")
        _check_option("bound", bound, _BOUNDS)
        _check_option("init", init, INITS)
        _check_option("guarantee", guarantee, ("checked", "certified"))
        _check_option("preconditioner", preconditioner, PRECONDITIONERS)
        _validate_type(preconditioner_reg, "numeric", "preconditioner_reg")
        if not preconditioner_reg > 0:
            raise ValueError(
                f"preconditioner_reg must be > 0, got {preconditioner_reg}."
            )
        if not 0 < gamma < 2:
            raise ValueError(f"gamma must lie in (0, 2), got {gamma}.")
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}.")
        if n_iter < 1:
            raise ValueError(f"n_iter must be >= 1, got {n_iter}.")
        self.prior = prior
        self.curvature = curvature
        self.gate = gate
        self.lam = float(lam)
        self.gamma = float(gamma)
        self.bound = bound
        self.n_iter = int(n_iter)
        self.step = step
        self.init = init
        self.safeguard = bool(safeguard)
        self.guarantee = guarantee
        self.preconditioner = preconditioner
        self.preconditioner_reg = float(preconditioner_reg)

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
            guarantee=self.guarantee,
            preconditioner=self.preconditioner,
            preconditioner_reg=self.preconditioner_reg,
            gate=None if self.gate is None else self.gate.config,
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
            "guarantee",
            "preconditioner",
            "preconditioner_reg",
            "gate",
        }
        config.pop("architecture", None)
        check_config_keys(config, known, "MMNet")
        return cls(config.pop("prior", None), config.pop("curvature", None), **config)

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
        x, trace, state = mm_iterations(
            x0,
            y,
            L,
            prior=self.prior,
            curvature=self.curvature,
            curvature_state=state,
            return_state=True,
            n_iter=n_iter,
            gamma=self.gamma,
            bound=self.bound,
            step=self.step,
            lam=self.lam,
            create_graph=create_graph,
            safeguard=self.safeguard,
            guarantee=self.guarantee,
            preconditioner=self.preconditioner,
            preconditioner_reg=self.preconditioner_reg,
        )
        return x, state, trace
