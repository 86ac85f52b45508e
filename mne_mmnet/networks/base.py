"""What every learned solver shares: start, forward pass, config round trip.

MM-Net and the learned baselines of the benchmark (4DVarNet, Meta-Curvature,
ModGrad, OPTEnet, EUnet) are all unrolled iterative solvers. They differ in
:meth:`LearnedSolver.iterate` only; the training loop
(:func:`mne_mmnet.train`), the weight files (:func:`mne_mmnet.save_model`)
and the benchmark see this interface and nothing else.
"""

import torch
from mne.utils import _validate_type
from torch import nn

from ..solver import initial_estimate
from ..solver.linear import INITS

#: architecture name -> class, filled by :func:`register_architecture`
_ARCHITECTURES = {}


def register_architecture(name):
    """Class decorator registering a :class:`LearnedSolver` under ``name``."""

    def decorator(cls):
        _ARCHITECTURES[name] = cls
        cls.architecture = name
        return cls

    return decorator


def check_config_keys(config, known, cls_name):
    """Raise a clear error for keys a ``from_config`` does not understand."""
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ValueError(
            f"Unknown {cls_name} config keys {unknown}; known {sorted(known)}."
        )


class LearnedSolver(nn.Module):
    """Base class of unrolled learned solvers of ``y = L x``.

    Subclasses set ``self.prior`` in ``__init__`` (the autoencoder used by the
    meta-loss, or None; not a class attribute, which would hide the module),
    ``n_iter`` and ``init``, and implement :meth:`iterate` and the ``config``
    property / ``from_config`` classmethod pair.
    """

    architecture = None
    #: smallest number of time samples the networks accept
    min_n_times = 1
    #: None when any number of time samples works, else the one that does
    fixed_n_times = None

    def _check_init(self, init):
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}.")
        return init

    def initial_estimate(self, y, L, *, init=None, seed=None):
        """Start of the iterations, see :func:`mne_mmnet.solver.initial_estimate`."""
        init = self.init if init is None else init
        prior = getattr(self, "prior", None)
        gate = getattr(self, "gate", None)
        return initial_estimate(y, L, init=init, seed=seed, prior=prior, gate=gate)

    def iterate(self, x0, y, L, *, n_iter=None, create_graph=False, state=None):
        """Run ``n_iter`` iterations from ``x0``, continuing ``state``.

        Returns ``(x, state, trace)``; ``state`` lets a later call continue
        (the recurrent memory, or the embedded variable), ``trace`` is solver
        specific (None when there is none).
        """
        raise NotImplementedError

    @property
    def n_parameters(self):
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

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
            Number of iterations (default ``self.n_iter``).
        x0 : torch.Tensor | None
            Start; by default drawn per ``self.init`` with ``seed``.
        seed : None | int | numpy.random.Generator | torch.Generator
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
        trace : object
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
        if n_iter is not None:
            _validate_type(n_iter, "int-like", "n_iter")
            if int(n_iter) < 0:
                raise ValueError(f"n_iter must be >= 0 (or None), got {n_iter}.")
        n_times = y.shape[-1]
        if self.fixed_n_times is not None and n_times != self.fixed_n_times:
            raise ValueError(
                f"This {type(self).__name__} was built for {self.fixed_n_times} time "
                f"samples and cannot run on {n_times}: its learned preconditioner "
                "acts on the whole time axis. Crop or resample the data, or use a "
                "length-agnostic model (MM-Net, 4DVarNet, OPTEnet, EUnet)."
            )
        if x0 is None:
            x0 = self.initial_estimate(y, L, seed=seed)
        if create_graph is None:
            create_graph = self.training and torch.is_grad_enabled()
        x, _, trace = self.iterate(x0, y, L, n_iter=n_iter, create_graph=create_graph)
        return (x, trace) if return_trace else x
