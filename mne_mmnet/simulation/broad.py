"""A broad simulator: the variety of real evoked data, for training and testing.

:func:`simulate_broad` draws sources of either polarity, one to three patches
of any size (a single region up to order 5), several waveform families
(Gaussian, biphasic, damped oscillation, neural-mass spikes), any sampling rate
and window with or without a pre-stimulus baseline, and white, pink or
brain-background noise at any SNR, through any data-generating leadfield
(e.g. the perturbed head models of :mod:`mne_mmnet.forward.variants`).
"""

from functools import lru_cache

import numpy as np
from mne.utils import _check_option, _validate_type, logger, verbose

from ._base import Simulation
from ._patches import _check_range, _draw_patches, _hop_distances, _patch_profiles
from .noise import _check_rng, _colored_noise, _seed_repr

_NANO = 1e-9
WAVEFORMS = ("gaussian", "biphasic", "oscillation", "spike")
NOISES = ("white", "pink", "background")
POLARITIES = ("random", "positive", "negative")
# number of random cortical sources that make the background activity
_N_BACKGROUND = 200
# share of white sensor noise in the power of the background-noise option
_BACKGROUND_SENSOR_SHARE = 0.1


@lru_cache(maxsize=8)
def _spike_bank(seed, n=12):
    """Seed-region time courses of neural-mass spikes, 500 Hz, peak-centred.

    Returns (times in s relative to the peak, waveforms normalised to a
    positive unit peak).
    """
    from .nmm import simulate_nmm

    sim = simulate_nmm(
        n, seed=seed, snr_db=None, n_times=250, orders=(0, 0), verbose=False
    )
    waves = sim.sources[np.arange(n), sim.seeds[:, 0]].astype(np.float64)
    peak = np.abs(waves).argmax(axis=1)
    waves = waves * np.sign(waves[np.arange(n), peak])[:, None]
    out = []
    for w, p in zip(waves, peak):
        out.append(np.roll(w, 125 - p) / w[p])
    return (np.arange(250) - 125) / sim.sfreq, np.array(out)


def _waveforms(kinds, centers, sigmas, times, rng, sfreq, spikes):
    """One unit-peak waveform per (sample, patch); kinds index WAVEFORMS."""
    u = (times - centers[..., None]) / sigmas[..., None]
    gauss = np.exp(-0.5 * u**2)
    out = np.empty(gauss.shape)
    sel = kinds == 0
    out[sel] = gauss[sel]
    sel = kinds == 1  # derivative of a Gaussian, unit peak
    out[sel] = -u[sel] * gauss[sel] * np.exp(0.5)
    sel = kinds == 2  # damped oscillation under a Gaussian envelope
    if sel.any():
        nyq_cap = min(40.0, sfreq / 6.0)
        freq = rng.uniform(4.0, max(nyq_cap, 4.5), size=sel.sum())
        phase = rng.uniform(0, 2 * np.pi, size=sel.sum())
        env_sigma = rng.uniform(1.5, 4.0, size=sel.sum()) / freq
        t_rel = times - centers[sel][:, None]
        osc = np.cos(2 * np.pi * freq[:, None] * t_rel + phase[:, None])
        osc *= np.exp(-0.5 * (t_rel / env_sigma[:, None]) ** 2)
        out[sel] = osc / np.abs(osc).max(axis=1, keepdims=True).clip(1e-12)
    sel = kinds == 3  # neural-mass spike, time-warped
    if sel.any():
        bank_t, bank = spikes
        pick = rng.integers(len(bank), size=sel.sum())
        warp = rng.uniform(0.6, 1.6, size=sel.sum())
        t_rel = (times - centers[sel][:, None]) / warp[:, None]
        out[sel] = np.stack(
            [
                np.interp(t, bank_t, bank[k], left=0, right=0)
                for t, k in zip(t_rel, pick)
            ]
        )
    return out


def _background(leadfield, n, n_times, rng):
    """Sensor activity of many random cortical sources with pink time courses."""
    n_sources = leadfield.shape[1]
    out = np.empty((n, leadfield.shape[0], n_times))
    for k in range(n):
        idx = rng.choice(n_sources, size=_N_BACKGROUND, replace=False)
        courses = _colored_noise((_N_BACKGROUND, n_times), "pink", rng)
        out[k] = leadfield[:, idx] @ courses
    return out


def _scaled_noise(signal, snr_db, noise_kind, leadfield, rng):
    """Noise per sample scaled so that ||s|| / ||n|| matches snr_db."""
    n, n_channels, n_times = signal.shape
    noise = np.empty_like(signal)
    for kind in np.unique(noise_kind):
        sel = np.flatnonzero(noise_kind == kind)
        name = NOISES[kind]
        if name == "background":
            part = _background(leadfield, len(sel), n_times, rng)
            part /= np.linalg.norm(part, axis=(1, 2), keepdims=True)
            white = rng.standard_normal(part.shape)
            white /= np.linalg.norm(white, axis=(1, 2), keepdims=True)
            share = _BACKGROUND_SENSOR_SHARE
            part = np.sqrt(1 - share) * part + np.sqrt(share) * white
        else:
            part = _colored_noise((len(sel), n_channels, n_times), name, rng)
        noise[sel] = part
    noise /= np.linalg.norm(noise, axis=(1, 2), keepdims=True).clip(1e-300)
    scale = np.linalg.norm(signal, axis=(1, 2)) / np.sqrt(10 ** (snr_db / 10))
    return noise * scale[:, None, None]


def _check_choices(values, allowed, name):
    if isinstance(values, str):
        values = (values,)
    values = tuple(values)
    if not values:
        raise ValueError(f"{name} must name at least one of {allowed}.")
    for value in values:
        _check_option(name, value, allowed)
    return np.array([allowed.index(v) for v in values])


@verbose
def simulate_broad(
    n,
    *,
    seed=0,
    sfreq=512.0,
    n_times=64,
    polarity="random",
    n_patches=(1, 3),
    orders=(0, 5),
    snr_db=(0.0, 20.0),
    noise=NOISES,
    waveforms=WAVEFORMS,
    baseline=0.0,
    amplitude_range=(5.0, 15.0),
    leadfield=None,
    spike_banks=(0, 1, 2, 3),
    verbose=None,
):
    """Simulate evoked-like data with the variety of real recordings.

    Parameters
    ----------
    n : int
        Number of samples.
    seed : int | numpy.random.Generator
        Random seed; the same seed gives identical arrays.
    sfreq : float
        Sampling frequency in Hz.
    n_times : int
        Window length in samples (shared by all samples of the call).
    polarity : "random" | "positive" | "negative"
        Sign of each patch's amplitude (random: each patch independently).
    n_patches : int | tuple of int
        Number of patches, or an inclusive ``(min, max)`` range.
    orders : int | tuple of int
        Patch orders (0 is a single region), inclusive range.
    snr_db : float | tuple of float
        SNR in dB over the whole window, or a ``(min, max)`` range.
    noise : str | tuple of str
        Noise kinds drawn from per sample: ``"white"``, ``"pink"`` (sensor
        noise) and ``"background"`` (activity of 200 random cortical sources
        with pink time courses through ``leadfield``, plus 10 %% white sensor
        noise in power).
    waveforms : str | tuple of str
        Waveform families drawn from per patch: ``"gaussian"``, ``"biphasic"``
        (derivative of a Gaussian), ``"oscillation"`` (4-40 Hz under a
        Gaussian envelope), ``"spike"`` (Jansen-Rit spikes, time-warped).
    baseline : float
        Fraction of the window, at its start, without source activity (a
        pre-stimulus baseline), in [0, 0.6].
    amplitude_range : tuple of float
        Peak amplitudes in nA.m.
    leadfield : array, shape (n_channels, 994) | None
        Leadfield that generates the EEG (template if None).
    spike_banks : tuple of int
        Seeds of the banks of 12 neural-mass spikes that ``"spike"`` waveforms
        are drawn from (each bank is simulated once per process, about 4 s);
        use other seeds for held-out data.
    %(verbose)s

    Returns
    -------
    sim : Simulation
        Sources in A.m, EEG in V (not re-referenced), patch centres and masks;
        ``sample_params`` holds the draws (waveform kinds, signs, SNR, noise).

    Notes
    -----
    Waveform widths are physiological, not relative to the window: the
    Gaussian width ``sigma`` is log-uniform in 10-100 ms, capped at a sixth
    of the active part of the window and kept above 1.5 samples; peaks lie in
    the middle 70 %% of the active part.
    """
    n, n_times, sfreq = _check_sizes(n, n_times, sfreq, baseline)
    _check_option("polarity", polarity, POLARITIES)
    noise_ids = _check_choices(noise, NOISES, "noise")
    wave_ids = _check_choices(waveforms, WAVEFORMS, "waveforms")
    n_patches = _check_range(n_patches, "n_patches", integer=True, low=1)
    orders = _check_range(orders, "orders", integer=True, low=0)
    snr_db = _check_range(snr_db, "snr_db")
    amplitude_range = _check_range(amplitude_range, "amplitude_range", low=0)
    rng = _check_rng(seed)
    leadfield, hops, distances = _template_geometry(leadfield)
    logger.info(f"Simulating {n} broad samples ({n_times} samples at {sfreq} Hz)")

    seeds, patch_orders = _draw_patches(n, n_patches, orders, hops, rng)
    valid = seeds >= 0
    signs = np.ones(seeds.shape)
    if polarity == "random":
        signs = rng.choice([-1.0, 1.0], size=seeds.shape)
    elif polarity == "negative":
        signs = -signs
    amplitudes = rng.uniform(*amplitude_range, size=seeds.shape) * signs * valid
    waves, kinds = _draw_waves(
        valid, n_times, sfreq, baseline, wave_ids, spike_banks, rng
    )
    profiles = _patch_profiles(seeds, patch_orders, hops, distances)
    profiles *= amplitudes[..., None] * _NANO
    sources = np.matmul(profiles.transpose(0, 2, 1), waves)
    signal = np.matmul((profiles @ leadfield.T).transpose(0, 2, 1), waves)
    silent = np.flatnonzero(~np.any(signal != 0, axis=(1, 2)))
    if silent.size:
        raise ValueError(
            f"{silent.size} samples have no EEG signal (sources where the "
            "leadfield is zero); check the leadfield's columns."
        )
    snr = rng.uniform(*snr_db, size=n)
    noise_kind = rng.choice(noise_ids, size=n)
    eeg = signal + _scaled_noise(signal, snr, noise_kind, leadfield, rng)
    meta = dict(
        kind="broad",
        seed=_seed_repr(seed),
        polarity=polarity,
        n_patches=list(n_patches),
        orders=list(orders),
        snr_db=list(snr_db),
        noise=[NOISES[i] for i in noise_ids],
        waveforms=[WAVEFORMS[i] for i in wave_ids],
        baseline=float(baseline),
        units=dict(sources="A.m", eeg="V"),
    )
    sample_params = dict(
        orders=patch_orders,
        amplitudes=amplitudes,
        waveform=np.where(valid, kinds, -1),
        snr_db=snr,
        noise=noise_kind,
    )
    return Simulation(
        sources=sources.astype(np.float32),
        eeg=eeg.astype(np.float32),
        seeds=seeds,
        patch_masks=np.any(profiles != 0, axis=1),
        sfreq=sfreq,
        meta=meta,
        sample_params=sample_params,
    )


def _check_sizes(n, n_times, sfreq, baseline):
    """Return ``n``, ``n_times`` and ``sfreq`` checked and converted."""
    _validate_type(n, "int-like", "n")
    _validate_type(n_times, "int-like", "n_times")
    _validate_type(sfreq, "numeric", "sfreq")
    _validate_type(baseline, "numeric", "baseline")
    n, n_times, sfreq = int(n), int(n_times), float(sfreq)
    if n < 1 or n_times < 2 or sfreq <= 0 or not 0 <= baseline <= 0.6:
        raise ValueError(
            "n >= 1, n_times >= 2, sfreq > 0 and baseline in [0, 0.6] are needed, "
            f"got {n}, {n_times}, {sfreq} and {baseline}."
        )
    return n, n_times, sfreq


def _template_geometry(leadfield):
    """Return the leadfield (template's by default), hop and metric distances."""
    from ..forward import read_template_adjacency, read_template_forward

    fwd = read_template_forward(verbose=False)
    if leadfield is None:
        leadfield = fwd["sol"]["data"]
    leadfield = np.asarray(leadfield, np.float64)
    positions = fwd["source_rr"]
    if leadfield.shape[1] != len(positions):
        raise ValueError(
            f"leadfield must have {len(positions)} columns, got {leadfield.shape}."
        )
    hops = _hop_distances(read_template_adjacency())
    distances = np.linalg.norm(positions[:, None] - positions, axis=-1)
    return leadfield, hops, distances


def _draw_waves(valid, n_times, sfreq, baseline, wave_ids, spike_banks, rng):
    """Draw every patch's waveform (silent before the baseline's end)."""
    duration = n_times / sfreq
    onset = baseline * duration
    active = duration - onset
    centers = onset + active * rng.uniform(0.15, 0.85, size=valid.shape)
    sigmas = np.exp(rng.uniform(np.log(0.01), np.log(0.1), size=valid.shape))
    sigmas = np.clip(sigmas, 1.5 / sfreq, max(active / 6, 1.5 / sfreq))
    kinds = rng.choice(wave_ids, size=valid.shape)
    spikes = None
    if (kinds == 3).any():
        spikes = _spike_bank(int(spike_banks[rng.integers(len(spike_banks))]))
    times = np.arange(n_times) / sfreq
    waves = _waveforms(kinds, centers, sigmas, times, rng, sfreq, spikes)
    waves *= (times >= onset) * valid[..., None]
    return waves, kinds
