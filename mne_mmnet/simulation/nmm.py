"""Jansen-Rit neural mass simulations of interictal-like spikes."""

import numpy as np
from mne.parallel import parallel_func
from mne.utils import _check_option, _validate_type, logger, verbose

from ._base import Simulation, _concatenate
from ._jansen_rit import _check_block, jansen_rit
from ._patches import (
    _check_range,
    _draw_patches,
    _get_head_model,
    _hop_distances,
    _patch_profiles,
)
from .noise import _check_rng, _seed_repr, add_noise


@verbose
def simulate_nmm(
    n,
    *,
    seed=0,
    snr_db=5.0,
    noise="white",
    sfreq=500.0,
    n_times=500,
    n_patches=1,
    orders=(1, 5),
    amplitude_range=(5.0, 15.0),
    spike_snr_db=15.0,
    spike_position=0.5,
    active_gain=3.6,
    active_input=90.0,
    background_input=220.0,
    input_noise=2.0,
    transient=0.5,
    search=3.0,
    batch_size=16,
    n_jobs=None,
    backend="numpy",
    device=None,
    dtype="float64",
    fwd=None,
    adjacency=None,
    verbose=None,
):
    """Simulate interictal-like spikes from Jansen-Rit neural masses.

    After :footcite:t:`SunEtAl2022`.

    Every source is a Jansen-Rit column. Background columns have the standard
    parameters and input; each active patch (grown on the adjacency graph as
    in :func:`~mne_mmnet.simulate_sereega`) is driven by a column with a raised
    excitatory gain, which produces sporadic spikes.

    Parameters
    ----------
    n : int
        Number of samples.
    seed : int | numpy.random.Generator | None
        Random seed; the same seed (and ``batch_size``) gives identical arrays.
    snr_db : float | tuple of float | None
        Sensor SNR in dB, or a ``(min, max)`` range drawn per sample; ``None``
        adds no sensor noise.
    noise : ``"white"`` | ``"pink"``
        Colour of the sensor noise.
    sfreq : float
        Output sampling frequency in Hz (the integration step is 0.5 ms, so
        ``2000 / sfreq`` must be an integer).
    n_times : int
        Window length in samples (500 = 1 s at 500 Hz).
    n_patches, orders : int | tuple of int
        Patches per sample and their neighbourhood orders, as in
        :func:`~mne_mmnet.simulate_sereega`.
    amplitude_range : tuple of float
        Peak amplitude of the spike at the (first) patch centre, in nA.m;
        further patches keep the same unit, so that each sits
        ``spike_snr_db`` over the background.
    spike_snr_db : float
        Power of the spike column over the mean background column power, in
        dB (see Notes).
    spike_position : float | tuple of float
        Where the spike peak falls in the window, as a fraction of its length
        (a number, or a range drawn uniformly per sample).
    active_gain : float
        Excitatory gain ``A`` (mV) of the spiking columns.
    active_input, background_input : float
        Mean input rates (pulses/s) of the spiking and background columns.
    input_noise : float
        Input fluctuation ``sigma`` (pulses/s^(1/2)), see
        :func:`~mne_mmnet.simulation.jansen_rit`.
    transient : float
        Warm-up time (s) discarded before recording.
    search : float
        Length (s) of the stretch of the spiking column searched for its
        largest spike (the window is cut around it).
    batch_size : int
        Samples integrated together (memory grows as
        ``batch_size * n_sources * n_times``). Each batch draws from its own
        random stream spawned from ``seed``, so results depend on
        ``batch_size`` but not on ``n_jobs``.
    n_jobs : int | None
        Number of batches run in parallel (processes, via joblib).
    backend : ``"numpy"`` | ``"torch"``
        Array library for the integration.
    device : str | torch.device | None
        Torch device (torch backend only).
    dtype : ``"float64"`` | ``"float32"``
        Precision of the integration (float32 is about twice as fast with
        the torch backend).
    fwd, adjacency
        Head model, as in :func:`~mne_mmnet.simulate_sereega`.
    %(verbose)s

    Returns
    -------
    sim : Simulation
        ``sources`` (A.m) hold the spike patches only; ``eeg`` (V) is the
        leadfield applied to the spike patches plus the background columns,
        plus sensor noise.

    Notes
    -----
    Each spiking column is integrated for ``transient + search + window``
    seconds; its largest excursion above its median, at least half a window
    from either end, is the spike, and the window is cut so that it falls at
    ``spike_position``. A patch is driven coherently: all its regions carry
    that column's output (median removed) weighted by the Gaussian profile
    ``exp(-d^2 / (2 sd^2))``, ``sd = d_max / 2``, which is the same as
    simulating each of them with a common input. Background columns (all
    regions outside the patches) are integrated independently for the window
    and their means removed. The spike is scaled by ``k`` such that
    ``10 log10(k^2 mean(a^2) / mean_j mean(b_j^2)) = spike_snr_db``, with
    ``a`` the centre's waveform and ``b_j`` the background columns over the
    window; then everything is scaled so that the peak ``|k a|`` equals the
    drawn amplitude. The background enters the EEG only, not ``sources``.

    References
    ----------
    .. footbibliography::
    """
    n, n_times, batch_size = _check_sizes(n, n_times, batch_size)
    _check_block(5e-4, sfreq)
    _check_option("backend", backend, ("numpy", "torch"))
    _check_option("noise", noise, ("white", "pink"))
    patch_settings = _check_patch_settings(
        n_patches, orders, amplitude_range, spike_position
    )
    if snr_db is not None:
        snr_db = _check_range(snr_db, "snr_db")
    _check_durations(search=search, transient=transient)
    rng = _check_rng(seed)
    leadfield, positions, adjacency = _get_head_model(fwd, adjacency)
    hops = _hop_distances(adjacency)
    distances = np.linalg.norm(positions[:, np.newaxis] - positions, axis=-1)
    settings = dict(
        sfreq=float(sfreq),
        n_times=n_times,
        spike_snr_db=float(spike_snr_db),
        active_gain=float(active_gain),
        active_input=float(active_input),
        background_input=float(background_input),
        input_noise=float(input_noise),
        transient=float(transient),
        search=float(search),
        backend=backend,
        device=device,
        dtype=dtype,
    )
    logger.info(
        f"Simulating {n} neural-mass samples ({leadfield.shape[1]} Jansen-Rit "
        f"columns each, {n_times} samples at {sfreq} Hz)"
    )
    batch_args = (patch_settings, hops, distances, leadfield, settings)
    parts = _draw_batches(n, batch_size, n_jobs, rng, batch_args)
    return _assemble(
        parts,
        n,
        rng,
        seed=seed,
        snr_db=snr_db,
        noise=noise,
        patch_settings=patch_settings,
        settings=settings,
    )


def _check_sizes(n, n_times, batch_size):
    """Check the sample, window and batch sizes; return them as ints."""
    _validate_type(n, "int-like", "n")
    _validate_type(n_times, "int-like", "n_times")
    _validate_type(batch_size, "int-like", "batch_size")
    n, n_times, batch_size = int(n), int(n_times), int(batch_size)
    if n < 1 or n_times < 2 or batch_size < 1:
        raise ValueError(
            f"n and batch_size must be >= 1 and n_times >= 2, got n={n}, "
            f"n_times={n_times}, batch_size={batch_size}."
        )
    return n, n_times, batch_size


def _check_patch_settings(n_patches, orders, amplitude_range, spike_position):
    """Check the ``(min, max)`` ranges of the patch draws; return them as a dict."""
    n_patches = _check_range(n_patches, "n_patches", integer=True, low=1)
    orders = _check_range(orders, "orders", integer=True, low=0)
    amplitude_range = _check_range(amplitude_range, "amplitude_range", low=0)
    spike_position = _check_range(spike_position, "spike_position", low=0)
    if spike_position[1] > 1:
        raise ValueError(f"spike_position must be in [0, 1], got {spike_position}.")
    return dict(
        n_patches=n_patches,
        orders=orders,
        amplitude_range=amplitude_range,
        spike_position=spike_position,
    )


def _check_durations(**durations):
    """Durations (s) must be numbers >= 0."""
    for name, value in durations.items():
        _validate_type(value, "numeric", name)
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}.")


def _draw_batches(n, batch_size, n_jobs, rng, batch_args):
    """Simulate the batches (``_nmm_batch(count, rng, *batch_args)``).

    Each batch draws from its own stream spawned from ``rng``, so the result
    does not depend on ``n_jobs``.
    """
    starts = list(range(0, n, batch_size))
    batch_rngs = rng.spawn(len(starts))
    parallel, run, _ = parallel_func(_nmm_batch, n_jobs, verbose=False)
    return parallel(
        run(min(batch_size, n - start), batch_rng, *batch_args)
        for start, batch_rng in zip(starts, batch_rngs)
    )


def _assemble(parts, n, rng, *, seed, snr_db, noise, patch_settings, settings):
    """Concatenate the batches, record the settings, add the sensor noise."""
    meta = dict(
        kind="nmm",
        snr_db=None if snr_db is None else list(snr_db),
        noise=noise,
        seed=_seed_repr(seed),
        **{k: list(v) for k, v in patch_settings.items()},
        units=dict(sources="A.m", eeg="V"),
        background="in eeg only",
        **{k: v for k, v in settings.items() if k not in ("device",)},
    )
    sim = _concatenate(parts, meta)
    snr_values = np.full(n, np.inf)
    if snr_db is not None:
        snr_values = rng.uniform(*snr_db, size=n)
        sim.eeg = add_noise(sim.eeg, snr_values, color=noise, seed=rng)
    sim.eeg = sim.eeg.astype(np.float32)
    sim.sample_params["snr_db"] = snr_values
    return Simulation(**vars(sim))


def _nmm_batch(count, rng, patch_settings, hops, distances, leadfield, settings):
    """Draw the patches of one batch and simulate it (one joblib task)."""
    seeds, patch_orders = _draw_patches(
        count, patch_settings["n_patches"], patch_settings["orders"], hops, rng
    )
    profiles = _patch_profiles(seeds, patch_orders, hops, distances)
    low, high = patch_settings["amplitude_range"]
    amplitudes = rng.uniform(low, high, size=seeds.shape) * (seeds >= 0)
    position = rng.uniform(*patch_settings["spike_position"], size=count)
    sim = _simulate_batch(
        seeds, profiles, amplitudes, position, leadfield, rng, settings
    )
    sim.sample_params["orders"] = patch_orders
    return sim


def _spike_windows(signal, before, n_times):
    """Window starts putting the largest spike at ``before`` in each row.

    A candidate peak must be the largest absolute value of its own window, so
    that no other excursion in the window outgrows the spike; among those the
    highest wins (the highest candidate overall if none qualifies).
    """
    n_starts = signal.shape[-1] - n_times + 1
    window_max = np.lib.stride_tricks.sliding_window_view(
        np.abs(signal), n_times, axis=-1
    ).max(axis=-1)
    starts = np.empty(len(signal), dtype=np.int64)
    for i, (row, lead) in enumerate(zip(signal, before)):
        score = row[lead : lead + n_starts]
        valid = score >= window_max[i]
        if not np.any(valid):
            logger.debug(f"  no isolated spike in sample {i}; using the largest")
            valid = np.ones_like(valid)
        starts[i] = np.argmax(np.where(valid, score, -np.inf))
    return starts


def _simulate_batch(seeds, profiles, amplitudes, position, leadfield, rng, settings):
    """Integrate one batch: spiking columns, background columns, projection."""
    count, max_patches = seeds.shape
    n_sources = leadfield.shape[1]
    sfreq, n_times = settings["sfreq"], settings["n_times"]
    valid = seeds >= 0
    common = dict(
        transient=settings["transient"],
        sfreq=sfreq,
        input_noise=settings["input_noise"],
        backend=settings["backend"],
        device=settings["device"],
        dtype=settings["dtype"],
        verbose=False,
    )
    # spiking columns: one per patch, long enough to find a spike
    search_len = int(round(settings["search"] * sfreq))
    active = jansen_rit(
        count * max_patches,
        (search_len + n_times) / sfreq,
        A=settings["active_gain"],
        input_mean=settings["active_input"],
        seed=rng,
        **common,
    ).reshape(count, max_patches, -1)
    active = active - np.median(active, axis=-1, keepdims=True)
    before = np.round(position * (n_times - 1)).astype(int)
    starts = _spike_windows(active[:, 0], before, n_times)
    take = starts[:, None] + np.arange(n_times)
    window = np.take_along_axis(active, take[:, None, :], axis=-1)
    # background: every region an independent standard column
    background = jansen_rit(
        count * n_sources,
        n_times / sfreq,
        input_mean=settings["background_input"],
        seed=rng,
        **common,
    ).reshape(count, n_sources, n_times)
    background -= background.mean(axis=-1, keepdims=True)
    inside = np.any(profiles > 0, axis=1)
    background[inside] = 0.0
    bg_power = np.sum(background**2, axis=(1, 2)) / np.maximum(
        np.sum(~inside, axis=1) * n_times, 1
    )
    spike_power = np.mean(window**2, axis=-1)
    gain = np.sqrt(10 ** (settings["spike_snr_db"] / 10) * bg_power[:, None])
    window *= (gain / np.sqrt(spike_power))[..., None]
    # one unit per sample: the first patch's peak becomes its drawn amplitude
    peak = np.max(np.abs(window), axis=-1)
    unit = amplitudes[:, 0] * 1e-9 / peak[:, 0]  # A.m per mV
    window *= unit[:, None, None]
    background *= unit[:, None, None]
    amplitudes = np.where(valid, peak * unit[:, None] * 1e9, 0.0)
    sources = np.matmul(profiles.transpose(0, 2, 1), window)
    eeg = leadfield @ (sources + background)
    return Simulation(
        sources=sources.astype(np.float32),
        eeg=eeg,
        seeds=seeds,
        patch_masks=inside,
        sfreq=sfreq,
        sample_params=dict(
            amplitudes=amplitudes,
            spike_samples=before,
            background_rms_mv=np.sqrt(bg_power),
        ),
    )
