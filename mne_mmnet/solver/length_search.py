"""The length of a certified step: the lowest segment majorant over lengths.

A step ``D`` proposed by the networks is certified by a quadratic majorant
valid on a segment ``x - t D``, ``t <= l``
(:class:`~mne_mmnet.solver.segment.SegmentMajorant`). Shorter segments
have tighter majorants but allow less decrease; :func:`_segment_majorant`
searches the length whose majorant's minimum is lowest.
"""

import math

import torch

from .segment import SegmentMajorant

#: segment lengths (units of the proposed step) a certified step first tries:
#: 1 down to 2**-30 by factors of 4
CERTIFY_LENGTHS = 4.0 ** -torch.arange(16, dtype=torch.float64)
#: on the CPU, bounded four at a time from the longest, stopping once the
#: shorter ones cannot give a lower majorant (:func:`_coarse_curvatures`)
CERTIFY_GROUP = 4
#: then, per sample, these multiples of the best of them (a sqrt(2) grid)
REFINE_FACTORS = 2.0 ** torch.tensor([1.5, 1.0, 0.5, -0.5, -1.0, -1.5])


def _segment_majorant(
    x, update, grad, L, prior, state, norms, lam, lengths, expansion=None
):
    """``(update, g.D, C)``, the update shortened if several ``lengths``.

    ``lengths`` (on ``x``'s device and dtype): ``([1], None)`` bounds the
    proposed step as it is (``C`` its majorant's curvature);
    ``(CERTIFY_LENGTHS, REFINE_FACTORS)`` certifies it.

    Certifying: the majorant's curvature ``C_l`` is bounded on the segments
    ``x - t D``, ``t <= l``, for the lengths ``l`` of :data:`CERTIFY_LENGTHS`
    and then for :data:`REFINE_FACTORS` times the best of them (at most 1;
    :class:`~mne_mmnet.solver.segment.SegmentMajorant`); on each, the
    majorant ``u(x) - t g.D + t^2 C_l / 2`` is minimised in closed form, and
    the length whose minimum is lowest is taken (on the CPU, lengths that
    cannot give the lowest are not bounded: :func:`_coarse_curvatures`).
    The step is 0 (no move) where no segment has a finite bound or
    ``g.D <= 0``.
    ``expansion``: the prior's tangents along the update's direction and the
    update's multiple of it (:class:`~mne_mmnet.solver.segment.SegmentMajorant`),
    or ``None`` (computed here).
    """
    g, step = grad.detach(), update.detach()
    rate = (g * step).flatten(1).sum(1)

    # one forward-mode pass of the prior for all the lengths bounded below
    curvatures = SegmentMajorant(x, step, L, prior=prior, state=state,
                                 layer_norms=norms, lam=lam,
                                 expansion=expansion)  # fmt: skip

    lengths, refine = lengths
    if refine is None:
        return update, rate, curvatures(lengths)[:, 0]
    coarse = lengths.expand(len(x), -1)
    group = CERTIFY_GROUP if x.device.type == "cpu" else coarse.shape[1]
    curv = _coarse_curvatures(curvatures, rate, coarse, group)
    t, c, gain, best = _lowest_majorant(rate, curv, coarse)
    fine = (best[:, None] * refine).clamp(max=1.0)
    t_fine, c_fine, gain_fine, _ = _lowest_majorant(rate, curvatures(fine), fine)
    better = gain_fine > gain
    t, c = torch.where(better, t_fine, t), torch.where(better, c_fine, c)
    return t[:, None, None] * update, t * rate, t * t * c


def _coarse_curvatures(curvatures, rate, coarse, group):
    """``curvatures(coarse)``, longest lengths first, in groups, pruned.

    A segment of length ``l`` guarantees a decrease of at most ``l g.D``, so
    once no sample's best decrease so far is below ``l g.D`` for the next
    (longest remaining) length, the shorter lengths cannot win and are left
    out (``inf``: unusable). The lowest majorant is the same as with every
    length bounded. On a GPU all lengths go at once (``group`` = all: no
    host synchronisation in the loop).
    """
    n_lengths = coarse.shape[1]
    if group >= n_lengths:
        return curvatures(coarse)
    curv = torch.full_like(coarse, math.inf)
    for start in range(0, n_lengths, group):
        stop = min(start + group, n_lengths)
        curv[:, start:stop] = curvatures(coarse[:, start:stop])
        if stop == n_lengths:
            break
        gain = _lowest_majorant(rate, curv[:, :stop], coarse[:, :stop])[2]
        if not bool((coarse[:, stop] * rate > gain).any()):
            break
    return curv


def _lowest_majorant(rate, curv, lengths):
    """Per sample, the segment whose majorant's minimum is lowest.

    ``curv[:, k] = C_k l_k^2``: the majorant in ``t`` (units of ``D``) has
    curvature ``C_k`` on ``t in [0, l_k]``. Returns its minimiser ``t`` (0
    where no segment is usable), ``C``, the guaranteed decrease and ``l``.
    """
    c = curv / (lengths * lengths)
    usable = (rate[:, None] > 0) & torch.isfinite(c) & (c > 0)
    c_safe = torch.where(usable, c, torch.ones_like(c))
    t = torch.minimum(rate[:, None] / c_safe, lengths)
    gain = torch.where(usable, t * rate[:, None] - 0.5 * t * t * c_safe, 0.0)
    best = gain.argmax(1, keepdim=True)
    t_best = torch.where(usable.gather(1, best), t.gather(1, best), 0.0)
    pick = (
        t_best,
        c_safe.gather(1, best),
        gain.gather(1, best),
        lengths.gather(1, best),
    )
    return tuple(v[:, 0] for v in pick)
