"""Public MNE-facing inverse functions: Evoked / Epochs in, SourceEstimate out."""

import numpy as np
from mne import BaseEpochs, Evoked, SourceEstimate
from mne.utils import _check_option, _validate_type, logger, verbose, warn

from .._docs import fill_doc
from ..pretrained import _MODEL_NAMES, DEFAULT_MODEL
from ._operator import MMNetInverse, _make_operator
from ._prepare import _check_values
from ._run import CLASSICAL_SETTINGS, _run  # noqa: F401 (re-exported)

#: names accepted by ``model=`` besides a path or a module (the pretrained
#: models); ``None`` is the hand-crafted (untrained) MM solver
KNOWN_MODELS = _MODEL_NAMES
#: most MM iterations accepted (the shipped models are trained with 10)
MAX_ITER = 10_000
# plausible EEG amplitudes (V): outside, a unit error is likely
_PLAUSIBLE = (1e-8, 1e-2)


@verbose
@fill_doc
def apply_mmnet_inverse(
    evoked,
    fwd,
    model=DEFAULT_MODEL,
    *,
    n_iter=None,
    guarantee=None,
    device=None,
    seed=0,
    return_trace=False,
    subjects_dir=None,
    verbose=None,
):
    """Estimate cortical sources of an Evoked with MM-Net.

    The method is MM-Net :footcite:`TranEtAl2026`.

    Parameters
    ----------
    evoked : mne.Evoked
        EEG data. Good EEG channels are used (any subset of the template's 90
        channels, at least 16); bad channels are left out. The data are
        average-referenced (with the same projection applied to the
        leadfield); the object is not modified.
    %(fwd)s
    %(model)s
        Ignored (must stay at its default) when ``fwd`` is a prepared
        inverse, which holds its model.
    %(n_iter)s
    %(guarantee)s
    %(device)s
        Ignored with a prepared inverse.
    %(seed)s
    return_trace : bool
        Also return the solver trace (energy per iteration; steps certified,
        checked and rejected, see :attr:`mne_mmnet.solver.MMTrace.step_labels`),
        e.g. for :func:`mne_mmnet.viz.plot_convergence`.
    %(subjects_dir)s
    %(verbose)s

    Returns
    -------
    stc : mne.SourceEstimate
        Region amplitudes (A·m), one row per template region, placed at each
        region's representative vertex; ``tmin = evoked.times[0]``,
        ``tstep = 1 / sfreq``, subject from the source space.
    trace : MMTrace
        Only if ``return_trace=True``.

    Raises
    ------
    TypeError
        If ``evoked`` is not an :class:`mne.Evoked`, ``fwd`` not an
        :class:`mne.Forward` or prepared inverse, or ``return_trace`` not a
        bool.
    ValueError
        If the data or forward cannot be used (no or too few EEG channels,
        channels missing from ``fwd``, non-finite or all-zero data, current
        source density, free orientation, a source space other than the
        template, an unknown model name or missing file, ``n_iter`` outside
        1..10,000, a device other than CPU or CUDA, or CUDA asked for but
        absent). Each message says what was found and what to do.

    Notes
    -----
    The MM-Net energy compares directions (cosine similarities), so its
    minimiser has no scale: the data are divided by their norm before the
    solve (any finite amplitude gives the same map) and the amplitude is
    restored by the least-squares fit of the predicted data to the
    referenced measurements, ``a = <L x, y> / <L x, L x>``. This fit is the
    scale that explains the data best with the estimate's spatial pattern;
    for an extended source it is usually below the true peak amplitude (the
    estimate spreads the activity), so read amplitudes as relative.

    Recordings longer than 2,048 samples are solved in overlapping windows
    of 512 samples (64 overlap, linear cross-fades), so memory stays bounded.

    A call with a forward keeps the inverse it prepares (model, referenced
    leadfield rows, start kernel; the 8 most recent, matched by model,
    device, channels and the content of the projectors and leadfield), so
    later calls on the same channels only run the checks;
    :func:`~mne_mmnet.make_mmnet_inverse` prepares one explicitly.

    References
    ----------
    .. footbibliography::
    """
    _validate_type(evoked, Evoked, "evoked", "mne.Evoked")
    inv = _operator_for(evoked.info, fwd, model, device, "evoked", subjects_dir)
    _validate_type(return_trace, bool, "return_trace")
    n_iter = _check_n_iter(n_iter)
    _check_option("guarantee", guarantee, (None, "checked", "certified"))
    picks = inv._check_info(evoked.info, "evoked")
    data = evoked.data[picks].astype(np.float64)  # a copy: never modify input
    y = _referenced(data, inv, "evoked")
    logger.info(
        f"    {len(inv.ch_names)} EEG channels, {data.shape[1]} time samples, "
        f"reference: {inv.reference}"
    )
    sources, trace = _run(inv, y[None], n_iter=n_iter, seed=seed, guarantee=guarantee)
    stc = SourceEstimate(
        sources[0], vertices=[v.copy() for v in inv.vertices],
        tmin=evoked.times[0], tstep=1.0 / evoked.info["sfreq"], subject=inv.subject,
    )  # fmt: skip
    return (stc, trace) if return_trace else stc


def _operator_for(info, fwd, model, device, name, subjects_dir):
    if isinstance(fwd, MMNetInverse):
        if model is not DEFAULT_MODEL and model != fwd.model_name:
            raise ValueError(
                f"fwd is a prepared inverse for model {fwd.model_name!r}; do not "
                f"pass model={model!r} with it (prepare another inverse)."
            )
        return fwd
    return _make_operator(
        info, fwd, model, device, name=name, subjects_dir=subjects_dir, reuse=True
    )


def _check_n_iter(n_iter):
    if n_iter is None:
        return None
    _validate_type(n_iter, "int-like", "n_iter")
    if not 1 <= int(n_iter) <= MAX_ITER:
        raise ValueError(
            f"n_iter must lie in 1..{MAX_ITER}, got {n_iter}; the shipped models "
            "were trained with 10."
        )
    return int(n_iter)


def _referenced(data, inv, name):
    """Check and project the data; warn on implausible amplitudes."""
    _check_values(data, inv.ch_names, name)
    y = inv.proj @ data
    peak = np.abs(y).max()
    if peak <= 1e-12 * np.abs(data).max():
        raise ValueError(
            f"{name} has nothing left after the reference and projectors (the "
            "data lie in the projected-out space); check the projectors."
        )
    if not _PLAUSIBLE[0] <= peak <= _PLAUSIBLE[1]:
        warn(
            f"{name}'s referenced EEG peaks at {peak:.3g} V, outside the usual "
            f"{_PLAUSIBLE[0]:g}-{_PLAUSIBLE[1]:g} V: check the units (MNE stores "
            "volts). The estimate scales linearly with the data."
        )
    return y


@verbose
@fill_doc
def apply_mmnet_inverse_epochs(
    epochs,
    fwd,
    model=DEFAULT_MODEL,
    *,
    n_iter=None,
    guarantee=None,
    device=None,
    seed=0,
    batch_size=16,
    return_generator=False,
    subjects_dir=None,
    verbose=None,
):
    """Estimate cortical sources of each epoch with MM-Net.

    Parameters
    ----------
    epochs : mne.Epochs
        EEG epochs; see :func:`apply_mmnet_inverse` for channel and reference
        handling. The object is not modified.
    %(fwd)s
    %(model)s
    %(n_iter)s
    %(guarantee)s
    %(device)s
    seed : int | None
        Seed of the random start of each batch (batch ``b`` uses ``seed + b``);
        models starting from a linear inverse are deterministic.
    batch_size : int
        Epochs solved together (one batched solver run each).
    return_generator : bool
        Return a generator yielding one stc per epoch instead of a list (the
        data of all epochs are still checked before the first is solved).
    %(subjects_dir)s
    %(verbose)s

    Returns
    -------
    stcs : list of mne.SourceEstimate | generator
        One source estimate per epoch.

    Raises
    ------
    ValueError
        As :func:`apply_mmnet_inverse`; every epoch is checked (finite, not
        all zero) before any is solved, and the message names the epoch.

    Notes
    -----
    A progress bar shows the batches (hidden with ``verbose=False``).
    """
    _validate_type(epochs, BaseEpochs, "epochs", "mne.Epochs")
    _validate_type(return_generator, bool, "return_generator")
    _validate_type(batch_size, "int-like", "batch_size")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if len(epochs) == 0:
        raise ValueError("epochs is empty: there is nothing to invert.")
    inv = _operator_for(epochs.info, fwd, model, device, "epochs", subjects_dir)
    n_iter = _check_n_iter(n_iter)
    _check_option("guarantee", guarantee, (None, "checked", "certified"))
    picks = inv._check_info(epochs.info, "epochs")
    data = epochs.get_data(picks=picks).astype(np.float64)
    y = np.empty_like(data)
    for k, sample in enumerate(data):  # all epochs checked before any solve
        y[k] = _referenced(sample, inv, f"epochs[{k}]")
    logger.info(
        f"    {len(epochs)} epochs, {len(inv.ch_names)} EEG channels, reference: "
        f"{inv.reference}, batches of {batch_size}"
    )
    gen = _epochs_generator(epochs, inv, y, n_iter, seed, int(batch_size), guarantee)
    return gen if return_generator else list(gen)


def _epochs_generator(epochs, inv, y, n_iter, seed, batch_size, guarantee):
    from ._run import _progress

    tstep = 1.0 / epochs.info["sfreq"]
    bar = _progress(int(np.ceil(len(y) / batch_size)), "epochs")
    for b, start in enumerate(range(0, len(y), batch_size)):
        b_seed = None if seed is None else seed + b
        sources, _ = _run(inv, y[start : start + batch_size], n_iter=n_iter,
                          seed=b_seed, batch_size=batch_size,
                          guarantee=guarantee)  # fmt: skip
        for x in sources:
            yield SourceEstimate(
                x, vertices=[v.copy() for v in inv.vertices], tmin=epochs.times[0],
                tstep=tstep, subject=inv.subject,
            )  # fmt: skip
        bar.update()
    bar.close()


def expand_to_vertices(stc):
    """Paint template-region values onto every fsaverage5 vertex.

    Parameters
    ----------
    stc : mne.SourceEstimate
        A region-level estimate on the template (as returned by
        :func:`apply_mmnet_inverse`).

    Returns
    -------
    stc_vertices : mne.SourceEstimate
        The same time courses on all 10,242 vertices of each fsaverage5
        hemisphere, each vertex carrying its region's value, for plotting
        with :meth:`mne.SourceEstimate.plot` and the surfaces of
        :func:`mne_mmnet.make_fsaverage5_subjects_dir`.

    Raises
    ------
    ValueError
        If ``stc`` is not laid out on the template regions.
    """
    from ._prepare import _N_FSAVERAGE5, _region_membership, _template_vertices

    _validate_type(stc, SourceEstimate, "stc", "mne.SourceEstimate")
    template = _template_vertices()
    if len(stc.vertices) != 2 or not all(
        np.array_equal(v, t) for v, t in zip(stc.vertices, template)
    ):
        raise ValueError(
            "stc must be on the 994 template regions (as returned by "
            "apply_mmnet_inverse), got vertices of sizes "
            f"{[len(v) for v in stc.vertices]}."
        )
    data = _region_membership() @ stc.data  # (20484, n_times)
    vertices = [np.arange(_N_FSAVERAGE5), np.arange(_N_FSAVERAGE5)]
    return SourceEstimate(
        data, vertices, tmin=stc.tmin, tstep=stc.tstep, subject=stc.subject
    )
