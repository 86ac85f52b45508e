"""Per-iteration diagnostics of the MM iterations and the label of every step."""

import math
from dataclasses import dataclass, fields

import torch

from .objective import _sq_norm


@dataclass
class MMTrace:
    """Per-iteration diagnostics of :func:`~mne_mmnet.solver.mm_iterations`.

    Attributes
    ----------
    total, fidelity, prior : tensor, shape (n_iter + 1, batch)
        Energy of the iterates (row 0 is the start).
    safeguard : tensor of bool, shape (n_iter, batch)
        Where the proposed step would increase the energy. With the safeguard
        on, these steps were rejected (the iterate was kept and the step
        multiplier halved); with it off they were taken, so the row counts
        the energy increases of the unguarded solver.
    clip_upper, clip_lower : tensor, shape (n_iter, batch)
        Fraction of entries of ``p_tilde`` clipped at ``nu_up`` / ``nu_low``
        (0 without a learned curvature model or without projection).
    step_ratio : tensor, shape (n_iter, batch)
        ``|gamma * scale * t * p * g| / |x_i|`` of the accepted update (before
        the energy-neutral rescaling to unit RMS; 0 when rejected).
    step_scale : tensor, shape (n_iter, batch)
        Safeguard multiplier applied to the proposed step (1 = full step).
    nu_up : tensor, shape (n_iter, batch)
        Upper projection bound (NaN with ``bound=None``).
    certified : tensor of bool, shape (n_iter, batch)
        Accepted steps whose descent is proved by a quadratic majorant valid
        on the whole segment they move along
        (:func:`mne_mmnet.solver.segment.segment_curvature`):
        ``g.D >= C / 2``.
    decrease_rate, majorant_curvature : tensor, shape (n_iter, batch)
        ``g.D`` and ``C`` of the proposed step ``D``: the majorant is
        ``u(x) - t g.D + t^2 C / 2`` on ``t in [0, 1]``.

    Notes
    -----
    Every step is one of: *certified* (see above), *checked* (accepted only
    because its energy was evaluated and did not rise: no majorant covers
    it) or *rejected* (its energy would rise; the iterate was kept). See
    :attr:`step_labels`.
    """

    total: object
    fidelity: object
    prior: object
    safeguard: object
    clip_upper: object
    clip_lower: object
    step_ratio: object
    step_scale: object
    nu_up: object
    certified: object = None
    decrease_rate: object = None
    majorant_curvature: object = None

    def to_numpy(self):
        """Return a copy whose fields are numpy arrays."""
        return MMTrace(
            **{
                f.name: None
                if getattr(self, f.name) is None
                else getattr(self, f.name).detach().cpu().numpy()
                for f in fields(self)
            }
        )

    @property
    def step_labels(self):
        """Fractions of steps that were certified, checked and rejected.

        Returns
        -------
        fractions : dict
            ``{"certified", "checked", "rejected"}`` over all (iteration,
            sample) steps; they sum to 1. Without the safeguard, rising
            steps are taken and counted as rejected (they would have been).
        """
        rejected = _as_float(self.safeguard)
        certified = _as_float(self.certified) if self.certified is not None else None
        n = rejected.size
        if n == 0:
            return dict(certified=0.0, checked=0.0, rejected=0.0)
        rej = float(rejected.mean())
        cert = 0.0 if certified is None else float((certified * (1 - rejected)).mean())
        return dict(certified=cert, checked=1.0 - rej - cert, rejected=rej)

    @property
    def safeguard_rate(self):
        """Fraction of (iteration, sample) steps that would increase the energy.

        With the safeguard on this is its firing rate; with it off, the rate
        of energy increases the solver let through.
        """
        fired = self.safeguard
        if isinstance(fired, torch.Tensor):
            return float(fired.float().mean()) if fired.numel() else 0.0
        return float(fired.mean()) if fired.size else 0.0


def _as_float(t):
    if isinstance(t, torch.Tensor):
        return t.detach().double().cpu().numpy()
    import numpy as np

    return np.asarray(t, dtype=float)


class _Record:
    """Collects the per-iteration rows of :class:`MMTrace`."""

    _ROWS = ("safeguard", "clip_upper", "clip_lower", "step_ratio", "step_scale",
             "nu_up", "certified", "decrease_rate", "majorant_curvature")  # fmt: skip

    def __init__(self, terms):
        self.rows = {name: [] for name in self._ROWS}
        self.energy_rows = [[t.detach()] for t in terms]
        self.batch = terms.total.shape[0]
        self.like = terms.total

    def clips(self, upper, lower):
        self.rows["clip_upper"].append(upper)
        self.rows["clip_lower"].append(lower)

    def step(self, accept, moves, descends, rate, curv, update, x, scale, nu_up):
        rows = self.rows
        rows["certified"].append(accept & moves & (rate >= 0.5 * curv))
        rows["decrease_rate"].append(rate)
        rows["majorant_curvature"].append(curv)
        size = torch.sqrt(_sq_norm(update.detach()) / _sq_norm(x))
        rows["step_ratio"].append(torch.where(accept, size, torch.zeros_like(scale)))
        rows["step_scale"].append(scale.clone())
        rows["safeguard"].append(~descends)
        rows["nu_up"].append(
            nu_up.detach() if nu_up is not None else torch.full_like(scale, math.nan)
        )

    def energies(self, terms):
        for store, t in zip(self.energy_rows, terms):
            store.append(t.detach())

    def trace(self, n_iter):
        empty = self.like.new_zeros((0, self.batch))
        trace = MMTrace(
            total=torch.stack(self.energy_rows[0]),
            fidelity=torch.stack(self.energy_rows[1]),
            prior=torch.stack(self.energy_rows[2]),
            **{k: (torch.stack(v) if v else empty) for k, v in self.rows.items()},
        )
        if n_iter == 0:
            trace.safeguard = trace.safeguard.bool()
            trace.certified = trace.certified.bool()
        return trace
