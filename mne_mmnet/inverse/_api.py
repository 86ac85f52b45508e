"""Public MNE-facing inverse functions: Evoked / Epochs in, SourceEstimate out."""

import numpy as np
from mne import BaseEpochs, SourceEstimate
from mne.utils import _validate_type, logger, verbose

from ..pretrained import _MODEL_NAMES
from ..utils import _get_device
from ._prepare import _prepare_data, _prepare_leadfield

#: names accepted by ``model=`` besides a path or a module (the pretrained
#: models); ``None`` is the hand-crafted (untrained) MM solver
KNOWN_MODELS = _MODEL_NAMES


@verbose
def apply_mmnet_inverse(
    evoked,
    fwd,
    model="sereega",
    *,
    n_iter=None,
    device=None,
    seed=0,
    return_trace=False,
    verbose=None,
):
    """Estimate cortical sources of an Evoked with MM-Net.

    Parameters
    ----------
    evoked : mne.Evoked
        EEG data. Good EEG channels are used (any subset of the template's 90
        channels, at least 16); bad channels are left out. The data are
        average-referenced (with the same projection applied to the
        leadfield); the object is not modified.
    fwd : mne.Forward
        Fixed-orientation forward model on the fsaverage template: the
        994-region template of :func:`mne_mmnet.read_template_forward`, or a
        vertex-level fsaverage forward on all 10,242 vertices of each hemisphere
        of an ico-5 source space, which is summed over the template regions.
    model : str | path-like | torch.nn.Module | None
        ``"sereega"`` (default) or ``"nmm"`` for the pretrained models, a path
        to a saved model, an :class:`mne_mmnet.MMNet`, or ``None`` for
        the hand-crafted MM solver (curvature bound as step, no learned parts).
        ``"sereega-unprojected"`` and ``"nmm-unprojected"`` are the R-MM-Net
        ablations of the benchmark: trained and run without projection or
        descent safeguard, so without the descent guarantee.
    n_iter : int | None
        Number of MM iterations; ``None`` uses the model's own setting.
    device : str | torch.device | None
        Where to compute; ``None`` uses CUDA when available, else the CPU.
    seed : int | None
        Seed of the solver's random start (the result is reproducible for a
        given seed).
    return_trace : bool
        Also return the solver trace (energy per iteration, safeguard counts),
        e.g. for :func:`mne_mmnet.viz.plot_convergence`.
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
        If ``evoked`` is not an :class:`mne.Evoked` or ``fwd`` not an
        :class:`mne.Forward`.
    ValueError
        If the data or forward cannot be used (no or too few EEG channels,
        channels missing from ``fwd``, non-finite or all-zero data, current
        source density, free orientation, a source space other than the
        template, an unknown model name, too few time samples, CUDA asked for
        but absent). Each message says what was found and what to do.

    Notes
    -----
    The MM-Net energy compares directions (cosine similarities), so its
    minimiser has no scale. Amplitudes are restored by the least-squares fit
    of the predicted data to the (referenced) measurements: the returned
    sources are ``a * x`` with ``a = <L x, y> / <L x, L x>``.

    References
    ----------
    .. [1] Tran L. M. T., Reynaud S., Fablet R., Merlini A., Rousseau F., Pham
       M. Q. (2026). Majorization-Minimization Networks for Inverse Problems:
       An Application to EEG Imaging. arXiv:2602.03855v2.
    """
    return _apply(
        evoked,
        fwd,
        model,
        n_iter=n_iter,
        device=device,
        seed=seed,
        return_trace=return_trace,
    )


def _apply(evoked, fwd, model, *, n_iter, device, seed, return_trace, name="evoked"):
    data, ch_names, proj, reference = _prepare_data(evoked, name=name)
    gain, vertices, subject = _prepare_leadfield(fwd, ch_names)
    logger.info(
        f"    {len(ch_names)} EEG channels, {data.shape[1]} time samples, "
        f"reference: {reference}"
    )
    y = (proj @ data)[np.newaxis]
    leadfield = proj @ gain
    sources, trace = _solve(y, leadfield, model, n_iter, device, seed)
    stc = SourceEstimate(
        sources[0],
        vertices=vertices,
        tmin=evoked.times[0],
        tstep=1.0 / evoked.info["sfreq"],
        subject=subject,
    )
    return (stc, trace) if return_trace else stc


def _resolve_model(model, device):
    """Load ``model`` (name, path, module or None) onto ``device``."""
    if model is None:
        return None
    from ..pretrained import load_model

    if isinstance(model, str) and model not in KNOWN_MODELS:
        from pathlib import Path

        if not Path(model).exists():
            raise ValueError(
                f"model must be one of {list(KNOWN_MODELS)}, a path to a saved "
                f"model, an MMNet module or None; got {model!r}, which is neither "
                "a known name nor an existing file."
            )
    net = load_model(model, device=device)
    from ..networks import MMNet

    if not isinstance(net, MMNet):
        raise TypeError(
            f"model must be an MM-Net; {model!r} holds a "
            f"{type(net).__name__}, a learned baseline of the benchmark without "
            "MM steps. Run it with mne_mmnet.bench or call the module directly."
        )
    if net.bound is None or not net.safeguard:
        logger.info(
            "    This model runs without the projection onto the curvature bound "
            "or without the descent safeguard (R-MM-Net): its steps carry no "
            "descent guarantee."
        )
    return net


def _solve(y, leadfield, model, n_iter, device, seed):
    """Run the solver on (batch, n_ch, T) data; return scaled sources."""
    from ..solver import solve_mm

    device = _get_device(device)
    net = _resolve_model(model, device)
    min_times = getattr(net, "min_n_times", 1)
    if y.shape[-1] < min_times:
        raise ValueError(
            f"The data have {y.shape[-1]} time samples; this model needs at least "
            f"{min_times}. Use a longer time window."
        )
    x, trace = solve_mm(
        y,
        leadfield,
        model=net,
        device=device,
        seed=seed,
        dtype="float32",
        return_trace=True,
        **_solver_settings(net, n_iter),
    )
    x = np.asarray(x, dtype=np.float64)
    return _restore_scale(x, leadfield, y), trace


#: settings of the hand-crafted solver (``model=None``): the data term alone
#: with the analytic bound, from the sLORETA estimate, directional steps;
#: the best of the classical settings in the benchmark (see its README table)
CLASSICAL_SETTINGS = dict(
    n_iter=10, bound="analytic", step="directional", init="sloreta", gamma=None
)


def _solver_settings(net, n_iter):
    """Options for :func:`solve_mm`: the model's own (None: classical MM)."""
    settings = dict(CLASSICAL_SETTINGS) if net is None else {}
    if n_iter is not None:
        _validate_type(n_iter, "int-like", "n_iter")
        if int(n_iter) < 1:
            raise ValueError(f"n_iter must be a positive integer, got {n_iter}.")
        settings["n_iter"] = int(n_iter)
    return settings


def _restore_scale(x, leadfield, y):
    """Least-squares amplitude ``a`` per sample so that ``a L x`` fits ``y``."""
    pred = np.einsum("cs,bst->bct", leadfield, x)
    num = np.einsum("bct,bct->b", pred, y)
    den = np.einsum("bct,bct->b", pred, pred)
    scale = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return x * scale[:, np.newaxis, np.newaxis]


@verbose
def apply_mmnet_inverse_epochs(
    epochs,
    fwd,
    model="sereega",
    *,
    n_iter=None,
    device=None,
    seed=0,
    batch_size=16,
    return_generator=False,
    verbose=None,
):
    """Estimate cortical sources of each epoch with MM-Net.

    Parameters
    ----------
    epochs : mne.Epochs
        EEG epochs; see :func:`apply_mmnet_inverse` for channel and reference
        handling. The object is not modified.
    fwd : mne.Forward
        The forward model, as in :func:`apply_mmnet_inverse`.
    model : str | path-like | torch.nn.Module | None
        The model, as in :func:`apply_mmnet_inverse`; it is loaded once.
    n_iter : int | None
        Number of MM iterations; ``None`` uses the model's own setting.
    device : str | torch.device | None
        Where to compute.
    seed : int | None
        Seed of the random start of each batch (batch ``b`` uses ``seed + b``);
        models starting from a linear inverse are deterministic.
    batch_size : int
        Epochs solved together (one batched solver run each).
    return_generator : bool
        Return a generator yielding one stc per epoch instead of a list, for
        many epochs.
    %(verbose)s

    Returns
    -------
    stcs : list of mne.SourceEstimate | generator
        One source estimate per epoch.
    """
    _validate_type(epochs, BaseEpochs, "epochs", "mne.Epochs")
    _validate_type(return_generator, bool, "return_generator")
    _validate_type(batch_size, "int-like", "batch_size")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if len(epochs) == 0:
        raise ValueError("epochs is empty: there is nothing to invert.")
    net = _resolve_model(model, _get_device(device))
    gen = _epochs_generator(epochs, fwd, net, n_iter, device, seed, int(batch_size))
    return gen if return_generator else list(gen)


def _epochs_generator(epochs, fwd, net, n_iter, device, seed, batch_size):
    # channels, reference and projector are shared by all epochs: check once
    # on the first, then check each epoch's values as its batch is loaded
    first = next(epochs.iter_evoked(copy=True))
    _, ch_names, proj, reference = _prepare_data(first, name="epochs[0]")
    gain, vertices, subject = _prepare_leadfield(fwd, ch_names)
    leadfield = proj @ gain
    picks = [epochs.ch_names.index(ch) for ch in ch_names]
    logger.info(
        f"    {len(epochs)} epochs, {len(ch_names)} EEG channels, reference: "
        f"{reference}, batches of {batch_size}"
    )
    tstep = 1.0 / epochs.info["sfreq"]
    for b, start in enumerate(range(0, len(epochs), batch_size)):
        stop = min(start + batch_size, len(epochs))
        data = epochs.get_data(picks=picks, item=slice(start, stop))
        for k, sample in enumerate(data, start):
            if not np.isfinite(sample).all():
                raise ValueError(
                    f"epochs[{k}] contains NaN or inf values; drop that epoch "
                    "or mark the channels as bad."
                )
        y = np.einsum("ij,bjt->bit", proj, data.astype(np.float64))
        flat = np.abs(y).reshape(len(y), -1).max(axis=1)
        if np.any(flat <= 1e-12 * max(np.abs(data).max(), 1e-300)):
            k = start + int(np.argmax(flat <= 1e-12 * np.abs(data).max()))
            raise ValueError(
                f"epochs[{k}] is all zero or identical on every channel after "
                "the average reference; drop that epoch."
            )
        sources, _ = _solve(
            y, leadfield, net, n_iter, device, None if seed is None else seed + b
        )
        for x in sources:
            yield SourceEstimate(
                x, vertices=vertices, tmin=epochs.times[0], tstep=tstep,
                subject=subject,
            )  # fmt: skip


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
