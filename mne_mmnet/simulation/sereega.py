"""SEREEGA-like extended sources: Gaussian patches with Gaussian waveforms."""

import numpy as np
from mne.utils import _check_option, _validate_type, logger, verbose

from ._base import Simulation
from ._patches import (
    _check_range,
    _draw_patches,
    _get_head_model,
    _hop_distances,
    _patch_profiles,
)
from .noise import _check_rng, _seed_repr, add_noise

_NANO = 1e-9  # amplitudes are drawn in nA.m, sources are stored in A.m


def _gaussian_waveforms(centers, widths, times):
    """``exp(-((t - c) / sigma)^2 / 2)`` with ``sigma = width / 6``."""
    sigma = widths[..., np.newaxis] / 6.0
    return np.exp(-0.5 * ((times - centers[..., np.newaxis]) / sigma) ** 2)


@verbose
def simulate_sereega(
    n,
    *,
    seed=0,
    snr_db=5.0,
    noise="white",
    sfreq=512.0,
    n_times=64,
    n_patches=1,
    orders=(1, 5),
    amplitude_range=(5.0, 15.0),
    center_range=(0.25, 0.75),
    width_range=(0.12, 0.36),
    fwd=None,
    adjacency=None,
    verbose=None,
):
    """Simulate SEREEGA-like extended sources and their EEG.

    After SEREEGA :footcite:`KrolEtAl2018` as used by
    :footcite:t:`ReynaudEtAl2024`.

    Each sample holds one (or several) extended patches on the source
    adjacency graph, each with a Gaussian spatial decay and a Gaussian
    waveform, projected through the leadfield, plus sensor noise.

    Parameters
    ----------
    n : int
        Number of samples.
    seed : int | numpy.random.Generator | None
        Random seed; the same seed gives identical arrays.
    snr_db : float | tuple of float | None
        Sensor SNR in dB, or a ``(min, max)`` range drawn uniformly per
        sample; ``None`` adds no noise.
    noise : ``"white"`` | ``"pink"``
        Colour of the sensor noise, see :func:`~mne_mmnet.simulation.add_noise`.
    sfreq : float
        Sampling frequency in Hz.
    n_times : int
        Number of time samples per sample.
    n_patches : int | tuple of int
        Number of patches per sample, or a ``(min, max)`` range (inclusive)
        drawn uniformly per sample.
    orders : int | tuple of int
        Neighbourhood order of a patch (seed plus all regions within that many
        hops), drawn uniformly in ``(min, max)`` inclusive.
    amplitude_range : tuple of float
        Peak amplitude range in nA.m (drawn uniformly per patch).
    center_range : tuple of float
        Range of the waveform peak time, as fractions of the window duration.
    width_range : tuple of float
        Range of the waveform width (``6 sigma``), as fractions of the window
        duration.
    fwd : mne.Forward | None
        Fixed-orientation forward model; ``None`` uses the template
        (:func:`mne_mmnet.read_template_forward`).
    adjacency : scipy.sparse array | None
        Source adjacency; ``None`` uses the template's.
    %(verbose)s

    Returns
    -------
    sim : Simulation
        ``sources`` in A.m, ``eeg`` in V (``L @ sources + noise``, not
        re-referenced), patch centres, patch masks and per-sample draws
        (``sample_params``: orders, amplitudes, centres, widths, SNR).

    Raises
    ------
    ValueError
        On invalid ranges or a forward/adjacency mismatch.
    RuntimeError
        If several patches cannot be placed two orders apart.

    Notes
    -----
    A patch is its centre plus all regions within ``order`` hops on the
    adjacency graph (hop distances computed once by breadth-first search).
    Its spatial amplitude is ``A exp(-d^2 / (2 sd^2))`` with ``d`` the
    Euclidean distance to the centre in ``fwd["source_rr"]``, ``sd = d_max / 2``
    and ``d_max`` the largest such distance in the patch (the edge sits at
    ``A e^-2``). The waveform is ``exp(-((t - c) / sigma)^2 / 2)``,
    ``sigma = width / 6``. The 500-ms protocol of Reynaud et al. (centre
    250 +/- 125 ms, width 60 ms) is scaled to the window: the centre is drawn
    in the middle half of the window and the width between 12 %% (the
    protocol's 60/500) and 36 %% of the window, so that every pulse fits in
    the window. Several patches in a sample are kept at least two orders
    apart (no region of one patch within one hop of another).

    References
    ----------
    .. footbibliography::
    """
    _validate_type(n, "int-like", "n")
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}.")
    _validate_type(n_times, "int-like", "n_times")
    n_times = int(n_times)
    _validate_type(sfreq, "numeric", "sfreq")
    if n_times < 2 or sfreq <= 0:
        raise ValueError(
            f"n_times must be >= 2 and sfreq > 0, got {n_times} and {sfreq}."
        )
    _check_option("noise", noise, ("white", "pink"))
    n_patches = _check_range(n_patches, "n_patches", integer=True, low=1)
    orders = _check_range(orders, "orders", integer=True, low=0)
    amplitude_range = _check_range(amplitude_range, "amplitude_range", low=0)
    center_range = _check_range(center_range, "center_range", low=0)
    width_range = _check_range(width_range, "width_range")
    if width_range[0] <= 0:
        raise ValueError(f"width_range must be positive, got {width_range}.")
    if snr_db is not None:
        snr_db = _check_range(snr_db, "snr_db")
    rng = _check_rng(seed)
    leadfield, positions, adjacency = _get_head_model(fwd, adjacency)
    hops = _hop_distances(adjacency)
    distances = np.linalg.norm(positions[:, np.newaxis] - positions, axis=-1)
    logger.info(
        f"Simulating {n} SEREEGA-like samples ({leadfield.shape[1]} sources, "
        f"{n_times} samples at {sfreq} Hz)"
    )
    return _simulate_sereega(
        n,
        rng=rng,
        snr_db=snr_db,
        noise=noise,
        sfreq=float(sfreq),
        n_times=n_times,
        n_patches=n_patches,
        orders=orders,
        amplitude_range=amplitude_range,
        center_range=center_range,
        width_range=width_range,
        leadfield=leadfield,
        hops=hops,
        distances=distances,
        seed=seed,
    )


def _simulate_sereega(
    n,
    *,
    rng,
    snr_db,
    noise,
    sfreq,
    n_times,
    n_patches,
    orders,
    amplitude_range,
    center_range,
    width_range,
    leadfield,
    hops,
    distances,
    seed,
):
    seeds, patch_orders = _draw_patches(n, n_patches, orders, hops, rng)
    valid = seeds >= 0
    duration = n_times / sfreq
    amplitudes = rng.uniform(*amplitude_range, size=seeds.shape) * valid
    centers = rng.uniform(*center_range, size=seeds.shape) * duration
    widths = rng.uniform(*width_range, size=seeds.shape) * duration
    profiles = _patch_profiles(seeds, patch_orders, hops, distances)
    profiles *= amplitudes[..., np.newaxis] * _NANO  # (n, P, n_sources), A.m
    times = np.arange(n_times) / sfreq
    waveforms = _gaussian_waveforms(centers, widths, times) * valid[..., None]
    # sources = sum_p profile_p (x) waveform_p; the EEG uses the same low rank
    sources = np.matmul(
        profiles.astype(np.float32).transpose(0, 2, 1),
        waveforms.astype(np.float32),
    )
    topographies = profiles @ leadfield.T  # (n, P, n_channels)
    eeg = np.matmul(topographies.transpose(0, 2, 1), waveforms)
    snr_values = np.full(n, np.inf)
    if snr_db is not None:
        snr_values = rng.uniform(*snr_db, size=n)
        eeg = add_noise(eeg, snr_values, color=noise, seed=rng)
    patch_masks = np.any(profiles > 0, axis=1)
    meta = dict(
        kind="sereega",
        snr_db=None if snr_db is None else list(snr_db),
        noise=noise,
        seed=_seed_repr(seed),
        n_patches=list(n_patches),
        orders=list(orders),
        amplitude_range=list(amplitude_range),
        center_range=list(center_range),
        width_range=list(width_range),
        units=dict(sources="A.m", eeg="V"),
    )
    sample_params = dict(
        orders=patch_orders,
        amplitudes=amplitudes,
        centers=np.where(valid, centers, np.nan),
        widths=np.where(valid, widths, np.nan),
        snr_db=snr_values,
    )
    return Simulation(
        sources=sources,
        eeg=eeg.astype(np.float32),
        seeds=seeds,
        patch_masks=patch_masks,
        sfreq=sfreq,
        meta=meta,
        sample_params=sample_params,
    )
