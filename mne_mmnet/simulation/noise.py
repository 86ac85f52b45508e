"""Sensor noise at a prescribed signal-to-noise ratio."""

import numpy as np
from mne.utils import _check_option, _validate_type

_COLORS = ("white", "pink")


def _check_rng(seed):
    """Return a numpy Generator from an int, None or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None:
        _validate_type(seed, "int-like", "seed", "int, None or np.random.Generator")
        seed = int(seed)
    return np.random.default_rng(seed)


def _seed_repr(seed):
    """How a seed is recorded in metadata (JSON-serialisable)."""
    if seed is None:
        return None
    if isinstance(seed, int | np.integer):
        return int(seed)
    return "generator"


def _colored_noise(shape, color, rng, exponent=1.0):
    """Draw Gaussian noise, white or with a 1/f**exponent power spectrum.

    Coloured noise is shaped along the last (time) axis in the frequency
    domain; its zero-frequency bin is removed (pink noise has no finite mean
    power there).
    """
    noise = rng.standard_normal(shape)
    if color == "white":
        return noise
    n_times = shape[-1]
    spectrum = np.fft.rfft(noise, axis=-1)
    freqs = np.fft.rfftfreq(n_times)
    gain = np.zeros_like(freqs)
    gain[1:] = freqs[1:] ** (-exponent / 2.0)  # amplitude ~ f^(-beta/2)
    return np.fft.irfft(spectrum * gain, n=n_times, axis=-1)


def add_noise(eeg, snr_db, *, color="white", seed=None, exponent=1.0):
    """Add sensor noise to EEG at a prescribed SNR, per sample.

    Parameters
    ----------
    eeg : array, shape (n_samples, n_channels, n_times) | (n_channels, n_times)
        Noise-free sensor data.
    snr_db : float | array of float, shape (n_samples,)
        Target signal-to-noise ratio in dB, one value or one per sample.
    color : ``"white"`` | ``"pink"``
        Temporal spectrum of the noise: flat, or ``1 / f ** exponent`` in power
        (shaped along time in the frequency domain).
    seed : int | numpy.random.Generator | None
        Random seed.
    exponent : float
        Spectral exponent ``beta`` of the coloured noise (1 for pink noise).

    Returns
    -------
    noisy : array
        ``eeg + noise``, with the shape and dtype of ``eeg``.

    Raises
    ------
    ValueError
        If the data are not 2-D or 3-D, if a sample is all zeros, or if
        ``snr_db`` does not broadcast to the samples.

    Notes
    -----
    For each sample with signal ``s`` and a noise draw ``n``, the output is
    ``y = s + n / ||n||_F * ||s||_F / sqrt(10 ** (snr_db / 10))`` (Frobenius
    norms over channels and time), so ``10 log10(||s||^2 / ||y - s||^2)``
    equals ``snr_db`` up to rounding. Computations run in float64.
    """
    _check_option("color", color, _COLORS)
    _validate_type(exponent, "numeric", "exponent")
    eeg = np.asarray(eeg)
    if eeg.ndim not in (2, 3):
        raise ValueError(
            "eeg must have shape (n_samples, n_channels, n_times) or "
            f"(n_channels, n_times), got shape {eeg.shape}."
        )
    single = eeg.ndim == 2
    data = eeg[np.newaxis] if single else eeg
    data = data.astype(np.float64, copy=False)
    snr_db = np.asarray(snr_db, dtype=np.float64)
    if snr_db.ndim > 1 or (snr_db.ndim == 1 and snr_db.size != data.shape[0]):
        raise ValueError(
            "snr_db must be a number or have one value per sample "
            f"({data.shape[0]}), got shape {snr_db.shape}."
        )
    if not np.all(np.isfinite(snr_db)):
        raise ValueError(f"snr_db must be finite, got {snr_db}.")
    rng = _check_rng(seed)
    noise = _colored_noise(data.shape, color, rng, exponent=float(exponent))
    signal_norm = np.linalg.norm(data.reshape(len(data), -1), axis=1)
    if np.any(signal_norm == 0):
        raise ValueError(
            "Cannot set an SNR for an all-zero sample (indices "
            f"{np.flatnonzero(signal_norm == 0)[:10].tolist()})."
        )
    noise_norm = np.linalg.norm(noise.reshape(len(noise), -1), axis=1)
    scale = signal_norm / noise_norm / np.sqrt(10.0 ** (snr_db / 10.0))
    noisy = data + noise * scale[:, np.newaxis, np.newaxis]
    noisy = noisy.astype(eeg.dtype if eeg.dtype.kind == "f" else np.float64)
    return noisy[0] if single else noisy


def measure_snr(noisy, clean):
    """Measure the SNR (dB) of ``noisy`` against ``clean``, per sample.

    Parameters
    ----------
    noisy, clean : array, shape (n_samples, ...)
        Data with and without noise.

    Returns
    -------
    snr_db : array, shape (n_samples,)
        ``10 log10(||clean||^2 / ||noisy - clean||^2)`` per sample.
    """
    noisy = np.asarray(noisy, dtype=np.float64)
    clean = np.asarray(clean, dtype=np.float64)
    if noisy.shape != clean.shape:
        raise ValueError(
            f"noisy and clean must have the same shape, got {noisy.shape} "
            f"and {clean.shape}."
        )
    n = len(clean)
    power_signal = np.sum(clean.reshape(n, -1) ** 2, axis=1)
    power_noise = np.sum((noisy - clean).reshape(n, -1) ** 2, axis=1)
    return 10.0 * np.log10(power_signal / power_noise)
