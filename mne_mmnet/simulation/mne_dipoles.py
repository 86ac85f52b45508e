"""Test data made by MNE-Python's own simulation functions.

None of this project's source, waveform or noise code is used: dipoles are
placed by :func:`mne.simulation.simulate_sparse_stc`, projected by
:func:`mne.apply_forward` and given sensor noise by
:func:`mne.simulation.add_noise` (a diagonal ad-hoc covariance through an IIR
colouring filter, as in MNE's examples). The data are therefore independent
of the simulators the models were trained on; only the head model (the
template forward) is shared.
"""

import warnings

import numpy as np
from mne.utils import _validate_type, logger, verbose

from ._base import Simulation
from .noise import _check_rng, _seed_repr

#: MNE's example colouring filter of the sensor noise (AR(2))
IIR_FILTER = (0.2, -0.2, 0.04)


def _waveform(rng):
    """Draw a Gaussian-windowed sinusoid of either sign (a ``data_fun``)."""
    freq = rng.uniform(3.0, 20.0)
    width = rng.uniform(0.02, 0.08)
    center_frac = rng.uniform(0.3, 0.7)
    phase = rng.uniform(0, 2 * np.pi)
    amp = rng.uniform(5.0, 15.0) * 1e-9 * rng.choice([-1.0, 1.0])

    def data_fun(times):
        center = times[0] + center_frac * (times[-1] - times[0])
        envelope = np.exp(-0.5 * ((times - center) / width) ** 2)
        return amp * envelope * np.cos(2 * np.pi * freq * (times - center) + phase)

    return data_fun


@verbose
def simulate_mne_dipoles(
    n_samples,
    *,
    seed,
    fwd=None,
    n_dipoles=(1, 3),
    snr_db=5.0,
    sfreq=250.0,
    n_times=128,
    tmin=-0.1,
    verbose=None,
):
    """Simulate EEG of a few dipoles with MNE-Python's simulation functions.

    Parameters
    ----------
    n_samples : int
        Number of trials.
    seed : int | numpy.random.Generator
        Seed of every draw.
    fwd : mne.Forward | None
        Fixed-orientation forward that generates the data (default: the
        template, :func:`mne_mmnet.read_template_forward`).
    n_dipoles : tuple of int
        Inclusive range of the number of dipoles per trial.
    snr_db : float
        Ratio of the clean data's power to the noise's, over the trial (dB).
    sfreq : float
        Sampling frequency (Hz).
    n_times : int
        Samples per trial.
    tmin : float
        Time of the first sample (s).
    %(verbose)s

    Returns
    -------
    sim : Simulation
        ``seeds`` are the dipoles' sources (``-1`` padded), ``patch_masks``
        the same sources; ``eeg`` is not re-referenced.

    Notes
    -----
    Each dipole has a random Gaussian-windowed sinusoid of either sign (3-20
    Hz, 20-80 ms wide, centred in the middle 40 %% of the trial); the noise
    is drawn by :func:`mne.simulation.add_noise` from
    :func:`mne.make_ad_hoc_cov` through ``IIR_FILTER`` (MNE's example
    colouring filter) and scaled to ``snr_db``.
    """
    import mne

    from ..forward import read_template_forward

    _validate_type(n_samples, "int-like", "n_samples")
    low, high = (int(v) for v in n_dipoles)
    if not 1 <= low <= high:
        raise ValueError(
            f"n_dipoles must be a range 1 <= low <= high, got {n_dipoles}."
        )
    rng = _check_rng(seed)
    if fwd is None:
        fwd = read_template_forward(verbose=False)
    src = fwd["src"]
    offsets = np.cumsum([0] + [s["nuse"] for s in src])
    info = mne.create_info(fwd["info"]["ch_names"], float(sfreq), "eeg")
    with info._unlock():
        info["chs"] = [dict(ch) for ch in fwd["info"]["chs"]]
    times = tmin + np.arange(int(n_times)) / float(sfreq)
    cov = mne.make_ad_hoc_cov(info, verbose=False)
    n_src = offsets[-1]
    sources = np.zeros((n_samples, n_src, len(times)), np.float32)
    eeg = np.zeros((n_samples, len(info["ch_names"]), len(times)), np.float32)
    seeds = np.full((n_samples, high), -1, np.int64)
    counts = rng.integers(low, high + 1, n_samples)
    for k in range(n_samples):
        funs = iter([_waveform(rng) for _ in range(counts[k])])
        stc = mne.simulation.simulate_sparse_stc(
            src, int(counts[k]), times, data_fun=lambda t, f=funs: next(f)(t),
            rng=int(rng.integers(2**31)),
        )  # fmt: skip
        rows = np.concatenate(
            [offsets[h] + np.searchsorted(src[h]["vertno"], v)
             for h, v in enumerate(stc.vertices)]
        )  # fmt: skip
        sources[k, rows] = stc.data
        seeds[k, : len(rows)] = rows
        clean = mne.apply_forward(fwd, stc, info, verbose=False)
        noise = mne.EvokedArray(np.zeros_like(clean.data), info, tmin=tmin)
        with warnings.catch_warnings():  # the data are not referenced yet
            warnings.filterwarnings("ignore", "No average EEG reference")
            mne.simulation.add_noise(
                noise, cov, iir_filter=list(IIR_FILTER),
                rng=int(rng.integers(2**31)), verbose=False,
            )  # fmt: skip
        gain = np.linalg.norm(clean.data) / np.linalg.norm(noise.data)
        eeg[k] = clean.data + noise.data * gain * 10 ** (-snr_db / 20)
    masks = np.zeros((n_samples, n_src), bool)
    for k, row in enumerate(seeds):
        masks[k, row[row >= 0]] = True
    logger.info(f"Simulated {n_samples} MNE dipole trials ({low}-{high} dipoles)")
    meta = dict(
        kind="mne-dipoles", n=int(n_samples), seed=_seed_repr(seed),
        n_dipoles=[low, high], snr_db=float(snr_db), sfreq=float(sfreq),
        n_times=int(n_times), tmin=float(tmin), noise="mne ad-hoc, IIR coloured",
    )  # fmt: skip
    return Simulation(
        sources=sources, eeg=eeg, seeds=seeds, patch_masks=masks, sfreq=float(sfreq),
        meta=meta, sample_params=dict(n_dipoles=counts),
    )  # fmt: skip
