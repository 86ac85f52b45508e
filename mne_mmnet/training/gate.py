"""Fit the start gate of a trained MM-Net on the broad simulator.

The gate (:class:`mne_mmnet.networks.StartGate`) weighs two starts of the
iterations: the sparse subspace-scan estimate ``s``
(:func:`mne_mmnet.solver.subspace.subspace_scan`) and the prior's output
``Phi(s)`` (at the sLORETA estimate of the data).
For each simulated sample the global localisation error (mm) of both starts
is measured; the gate is fitted to minimise the expected error of its choice,
``mean(g * LE(s) + (1 - g) * LE(Phi(s)))``, a cost-sensitive classification:
a sample where both starts localise alike costs nothing either way, one
where they differ by 30 mm weighs 30 times one where they differ by 1 mm.
The prior and the curvature are not changed.
"""

import copy

import numpy as np
import torch
from mne.utils import logger, verbose

from ..networks.gate import StartGate, start_features
from ..solver.linear import linear_inverse_kernel
from ..solver.objective import normalize_sources
from ..solver.subspace import subspace_scan
from .broad import _scores, draw_batch

#: batches of the broad simulator the gate is fitted on: a third of them
#: with focal sources only (where the sparse start is the better one)
GATE_BATCHES = dict(sparse_prob=0.35)


@torch.no_grad()
def gate_starts(prior, y, L):
    """Return the two starts the gate weighs, ``(s, Phi, subspace)``.

    ``s`` is the sparse subspace-scan estimate (unit RMS), ``Phi`` the
    prior's output at the sLORETA estimate, ``subspace`` the data's signal
    subspace the gate's features read.
    """
    kernel = linear_inverse_kernel(L.double(), method="sloreta")
    p = prior(normalize_sources((kernel @ y.double()).to(y.dtype)))
    x_scan, subspace = subspace_scan(y, L, return_subspace=True)
    return normalize_sources(x_scan), p, subspace


def gate_examples(model, *, seed, n_batches, first_batch=0, batch_size=16,
                  ranges=None, progress=None):  # fmt: skip
    """Features of both starts and their global LE on fresh simulated batches.

    Parameters
    ----------
    model : MMNet
        A trained MM-Net (its prior gives the second start).
    seed : int
        Seed of the batches (batch ``k`` is ``draw_batch(seed, k, ...)``).
    n_batches, batch_size : int
        Number and size of the batches.
    first_batch : int
        Index of the first batch (to split one set between processes).
    ranges : dict | None
        Per-batch draws, see ``mne_mmnet.training.broad.BROAD_BATCHES``
        (default ``GATE_BATCHES``: a third of the batches focal).
    progress : callable | None
        Called with the batch index after each batch.

    Returns
    -------
    examples : dict
        ``features`` (n, n_features) tensor, ``le_linear`` and ``le_prior``
        (n,) float64 arrays: global LE (mm) of ``s`` and of ``Phi(s)``.
    """
    ranges = dict(GATE_BATCHES if ranges is None else ranges)
    features, le_s, le_p = [], [], []
    prior = model.prior.eval()
    for k in range(int(first_batch), int(first_batch) + int(n_batches)):
        batch = draw_batch(seed, k, batch_size, ranges=ranges)
        y, L = batch["y"], batch["L"]
        s, p, subspace = gate_starts(prior, y, L)
        features.append(start_features(s, p, y, L, subspace=subspace))
        le_s.append(_scores(s, batch["sim"])[0])
        le_p.append(_scores(p, batch["sim"])[0])
        if progress is not None:
            progress(k)
    return dict(
        features=torch.cat(features).double(),
        le_linear=np.concatenate(le_s),
        le_prior=np.concatenate(le_p),
    )


def _expected_le(gate, examples):
    g = torch.sigmoid(gate.logit(examples["features"]))
    le_s = torch.as_tensor(examples["le_linear"])
    le_p = torch.as_tensor(examples["le_prior"])
    return (g * le_s + (1 - g) * le_p).mean()


def _chosen_le(gate, examples):
    """Mean global LE (mm) when the gate's choice is taken (g > 1/2)."""
    with torch.no_grad():
        pick = (gate.logit(examples["features"]) > 0).numpy()
    return float(np.where(pick, examples["le_linear"], examples["le_prior"]).mean())


@verbose
def fit_start_gate(train, val, *, hidden=(32, 32), seed=0, epochs=2000, lr=3e-3,
                   weight_decay=1e-3, val_every=50, verbose=None):  # fmt: skip
    """Fit a :class:`~mne_mmnet.networks.StartGate` on simulated examples.

    The examples come from :func:`mne_mmnet.training.gate.gate_examples`.

    Parameters
    ----------
    train, val : dict
        Examples from :func:`mne_mmnet.training.gate.gate_examples` (different seeds).
    hidden : tuple of int
        Hidden widths of the gate.
    seed : int
        Seed of the gate's initialisation.
    epochs : int
        Full-batch Adam steps.
    lr, weight_decay : float
        Adam's learning rate and decoupled weight decay (AdamW).
    val_every : int
        Steps between validations; the gate with the lowest validation
        expected LE is kept.
    %(verbose)s

    Returns
    -------
    gate : StartGate
        The kept gate (float32, eval mode).
    history : list of dict
        ``step``, ``train_le`` and ``val_le`` (expected global LE, mm) and
        ``val_chosen_le`` (mean global LE of the hard choice, mm) at each
        validation.
    """
    gate = StartGate(hidden, seed=seed).double()
    gate.set_standardization(train["features"])
    opt = torch.optim.AdamW(gate.parameters(), lr=lr, weight_decay=weight_decay)
    history, best, best_le = [], None, np.inf
    for step in range(int(epochs) + 1):
        if step % val_every == 0 or step == epochs:
            with torch.no_grad():
                val_le = float(_expected_le(gate, val))
                entry = dict(
                    step=step,
                    train_le=float(_expected_le(gate, train)),
                    val_le=val_le,
                    val_chosen_le=_chosen_le(gate, val),
                )
            history.append(entry)
            logger.info(f"gate step {step}: " + ", ".join(
                f"{k} {v:.3f}" for k, v in entry.items() if k != "step"))  # fmt: skip
            if val_le < best_le:
                best, best_le = copy.deepcopy(gate), val_le
        if step == epochs:
            break
        opt.zero_grad()
        _expected_le(gate, train).backward()
        opt.step()
    return best.float().eval(), history
