"""Learned diagonal curvature model of MM-Net (ConvLSTM cells over MM iterations).

The model predicts, at every MM iteration, a positive inverse-curvature vector
``p_tilde`` shaped like the iterate ``x`` (batch, n_sources, n_times). It follows
the dual structure of eq. (12) of Tran et al. (2026):
``p_tilde = F1(g) * F2(x, F1(g))`` where ``F1`` reads the energy gradient ``g``
and ``F2`` reads the iterate together with ``F1``'s output. Both are ConvLSTM
cells whose convolutions run along time (so the model works for any number of
samples) and whose hidden state is carried from one MM iteration to the next.
"""

import math

import torch
from mne.utils import _validate_type
from torch import nn
from torch.nn import functional as F

# log-multipliers are squashed smoothly into [-_LOG_RANGE, _LOG_RANGE]
_LOG_RANGE = 10.0


def _rms(t):
    """Root mean square of each sample of a (batch, ...) tensor, kept 3-D."""
    norm = torch.linalg.vector_norm(t.flatten(1), dim=1)
    return (norm / math.sqrt(t[0].numel()))[:, None, None]


def _safe_rms(t):
    tiny = torch.finfo(t.dtype).tiny
    return _rms(t).clamp_min(math.sqrt(tiny))


class ConvLSTMCell1d(nn.Module):
    """A ConvLSTM cell whose gates are 1-D convolutions along time.

    Input and hidden state have shape (batch, channels, n_times); the recurrence
    runs over successive calls (MM iterations), never over time, so any
    ``n_times`` works.

    Parameters
    ----------
    in_channels : int
        Channels of the input.
    hidden_channels : int
        Channels of the hidden and cell states.
    kernel_size : int
        Odd temporal kernel of the gate convolution ("same" padding).
    """

    def __init__(self, in_channels, hidden_channels, kernel_size=3):
        super().__init__()
        _validate_type(kernel_size, "int", "kernel_size")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}.")
        self.hidden_channels = int(hidden_channels)
        self.gates = nn.Conv1d(
            in_channels + hidden_channels,
            4 * hidden_channels,
            kernel_size,
            padding=kernel_size // 2,
        )
        with torch.no_grad():  # forget gate biased open: remember by default
            self.gates.bias.zero_()
            self.gates.bias[hidden_channels : 2 * hidden_channels].fill_(1.0)

    def init_state(self, inp):
        """Zero (hidden, cell) state matching ``inp`` (batch, channels, n_times)."""
        shape = (inp.shape[0], self.hidden_channels, inp.shape[-1])
        zeros = inp.new_zeros(shape)
        return zeros, zeros.clone()

    def forward(self, inp, state):
        """Advance the cell by one MM iteration; returns ``(h, (h, c))``."""
        h, c = state
        i, f, o, cand = self.gates(torch.cat([inp, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(cand)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class _RecurrentBranch(nn.Module):
    """Encoder (1x1 conv across sources) -> ConvLSTM -> decoder (1x1 conv)."""

    def __init__(self, in_channels, out_channels, embed, hidden, kernel_size):
        super().__init__()
        self.encode = nn.Conv1d(in_channels, embed, 1)
        self.cell = ConvLSTMCell1d(embed, hidden, kernel_size)
        self.decode = nn.Conv1d(hidden, out_channels, 1)
        with torch.no_grad():  # start as a constant log-multiplier
            self.decode.weight.mul_(0.1)
            self.decode.bias.zero_()

    def init_state(self, x):
        return self.cell.init_state(x.new_zeros(x.shape[0], 1, x.shape[-1]))

    def forward(self, inp, state):
        h, state = self.cell(F.silu(self.encode(inp)), state)
        return self.decode(h), state


class CurvatureModel(nn.Module):
    r"""Dual ConvLSTM curvature model ``p_tilde = F1(g) * F2(x, F1(g))``.

    Parameters
    ----------
    n_sources : int
        Number of sources (input channels).
    embed : int
        Channels after the 1x1 encoding of each branch's input.
    hidden : int
        Hidden channels of each ConvLSTM cell.
    kernel_size : int
        Temporal kernel of the ConvLSTM gates (odd).
    init_step : float
        Step of the untrained model relative to ``||x|| / ||g||`` when the
        solver does not pass the bound (see Notes), > 0.
    init_bound_ratio : float
        Step of the untrained model relative to the projection bound
        ``nu_up`` when the solver passes it, > 0.
    sign_invariant : bool
        Feed the networks only quantities that do not change when ``x`` and
        ``g`` change sign together (``|g|``, ``|x|`` and ``x * g``), so that
        the predicted step is exactly the same for ``(x, g)`` and
        ``(-x, -g)``: with an odd prior the solver is then sign-equivariant.
    symmetrize : bool
        Make any trained model sign-invariant after the fact: run it on
        ``(g, x)`` and on ``(-g, -x)``, each with its own recurrent state, and
        average the two log-multipliers (a geometric mean of the steps).

    Notes
    -----
    ``g`` and ``x`` are divided by their per-sample root mean square before
    entering the network, so the network sees O(1) inputs whatever the scale of
    the data. Each branch outputs a log-multiplier, squashed smoothly into
    ``[-10, 10]``, and the returned step is a per-element multiple of a
    per-sample reference ``r``:

    .. math:: \tilde p = r \, \exp(s_1 + s_2)

    with :math:`s_1 = F_1(g)` and :math:`s_2 = F_2(x, s_1)` (the product of
    eq. 12 in log space). When the solver passes the upper bound
    :math:`\nu_{up}` of the projection (eq. 13), :math:`r = \nu_{up}` and the
    untrained model steps at ``init_bound_ratio`` times the bound; the network
    then learns where to go below (or, without projection, above) it, and the
    clip keeps a gradient wherever the prediction is under the bound.
    Without a bound (R-MM-Net), :math:`r = \|x\| / \|g\|`, the step that moves
    ``x`` by its own norm; it scales like the bound (both grow as
    :math:`\|x\|^2`, the energy being scale invariant) and the untrained model
    makes relative steps of ``gamma * init_step``.
    """

    #: tells :func:`mne_mmnet.solver.mm_iterations` to pass ``nu_up=``
    accepts_bound = True

    def __init__(
        self,
        n_sources=994,
        *,
        embed=64,
        hidden=64,
        kernel_size=3,
        init_step=0.1,
        init_bound_ratio=0.5,
        sign_invariant=False,
        symmetrize=False,
    ):
        super().__init__()
        for name, val in (
            ("n_sources", n_sources),
            ("embed", embed),
            ("hidden", hidden),
        ):
            _validate_type(val, "int", name)
            if val < 1:
                raise ValueError(f"{name} must be a positive integer, got {val}.")
        for name, val in (
            ("init_step", init_step),
            ("init_bound_ratio", init_bound_ratio),
        ):
            _validate_type(val, "numeric", name)
            if not val > 0:
                raise ValueError(f"{name} must be > 0, got {val}.")
        self.config = dict(
            n_sources=int(n_sources),
            embed=int(embed),
            hidden=int(hidden),
            kernel_size=int(kernel_size),
            init_step=float(init_step),
            init_bound_ratio=float(init_bound_ratio),
            sign_invariant=bool(sign_invariant),
            symmetrize=bool(symmetrize),
        )
        self.grad_branch = _RecurrentBranch(
            n_sources, n_sources, embed, hidden, kernel_size
        )
        n_state_in = (3 if sign_invariant else 2) * n_sources
        self.state_branch = _RecurrentBranch(
            n_state_in, n_sources, embed, hidden, kernel_size
        )

    def _check(self, t, name):
        if t.ndim != 3 or t.shape[1] != self.config["n_sources"]:
            raise ValueError(
                f"{name} must have shape (batch, {self.config['n_sources']}, "
                f"n_times), got {tuple(t.shape)}."
            )

    def init_state(self, x):
        """Return the initial (zero) state for iterate ``x``."""
        self._check(x, "x")
        state = self.grad_branch.init_state(x), self.state_branch.init_state(x)
        if self.config["symmetrize"]:
            return state, tuple(tuple(t.clone() for t in part) for part in state)
        return state

    def log_multiplier(self, g, x, state):
        """Return the log of ``p_tilde / reference`` and the next state."""
        if self.config["symmetrize"]:
            s_plus, state_plus = self._log_multiplier(g, x, state[0])
            s_minus, state_minus = self._log_multiplier(-g, -x, state[1])
            return 0.5 * (s_plus + s_minus), (state_plus, state_minus)
        return self._log_multiplier(g, x, state)

    def _log_multiplier(self, g, x, state):
        state_g, state_x = state
        g_n = g / _safe_rms(g)
        x_n = x / _safe_rms(x)
        if self.config["sign_invariant"]:
            g_in, x_in = g_n.abs(), [x_n.abs(), x_n * g_n]
        else:
            g_in, x_in = g_n, [x_n]
        s1, state_g = self.grad_branch(g_in, state_g)
        s1 = _LOG_RANGE * torch.tanh(s1 / _LOG_RANGE)
        s2, state_x = self.state_branch(torch.cat([*x_in, s1], dim=1), state_x)
        s = _LOG_RANGE * torch.tanh((s1 + s2) / _LOG_RANGE)
        return s, (state_g, state_x)

    def forward(self, g, x, state, nu_up=None):
        """Predict the unprojected inverse curvature.

        Parameters
        ----------
        g : torch.Tensor
            Energy gradient at ``x``, (batch, n_sources, n_times).
        x : torch.Tensor
            Current iterate, same shape.
        state : tuple
            Recurrent state from :meth:`init_state` or the previous call.
        nu_up : torch.Tensor | None
            Upper projection bound per sample, (batch,), when the solver
            projects; it sets the output scale (see Notes of the class).

        Returns
        -------
        p_tilde : torch.Tensor
            Positive step, shaped like ``x``.
        state : tuple
            State for the next MM iteration.
        """
        self._check(g, "g")
        self._check(x, "x")
        s, state = self.log_multiplier(g, x, state)
        if nu_up is not None:
            reference = (
                nu_up.detach().reshape(-1, 1, 1) * self.config["init_bound_ratio"]
            )
        else:
            x_norm = torch.linalg.vector_norm(x.flatten(1), dim=1)[:, None, None]
            g_norm = torch.linalg.vector_norm(g.flatten(1), dim=1)[:, None, None]
            # ||x|| / ||g||, with ||g|| ||x|| (scale free) floored away from zero
            floor = torch.finfo(x.dtype).eps ** 2
            reference = x_norm.square() / (g_norm * x_norm).clamp_min(floor)
            reference = reference * self.config["init_step"]
        return reference * torch.exp(s), state


def count_parameters(module):
    """Count the trainable parameters of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
