"""Generalisation benchmark: every method on scenarios no model was trained on.

Each scenario changes one thing a real recording changes (polarity, number of
sources, SNR, sampling rate and window, background activity, head model,
electrode cap) relative to the paper's SEREEGA set-up. Test data come from
:func:`mne_mmnet.simulation.simulate_broad` with held-out seeds, held-out
neural-mass spike banks and held-out head-model variants
(:data:`mne_mmnet.forward.variants.TEST_VARIANTS`), except ``mne-dipoles``,
made by MNE-Python's own simulation functions
(:func:`mne_mmnet.simulation.simulate_mne_dipoles`), so that one scenario
shares no source or noise code with the training simulators, and
``sereega-16``, the Table I SEREEGA simulator in a 16-sample window (shorter
than any training window); the inverse always uses the template forward on
the scenario's channels.
"""

import numpy as np
from mne.utils import _validate_type, logger, verbose

_PAPER = dict(
    polarity="positive", n_patches=1, orders=(1, 5), snr_db=5.0, noise="white",
    waveforms="gaussian", sfreq=512.0, n_times=64,
)  # fmt: skip


def _mne_dipoles(n, rng):
    from ..simulation.mne_dipoles import simulate_mne_dipoles

    return simulate_mne_dipoles(n, seed=rng, verbose=False)


def _sereega_short(n, rng):
    from ..simulation.sereega import simulate_sereega

    return simulate_sereega(n, seed=rng, snr_db=5.0, n_times=16, verbose=False)


#: scenario name -> (description, simulate_broad overrides, head variant, channels);
#: overrides a function ``(n, rng) -> Simulation``: the data come from another
#: simulator (MNE-Python's functions, :func:`mne_mmnet.simulation.simulate_mne_dipoles`,
#: or the Table I SEREEGA one) on the template;
#: a scenario's test set depends on its position here: add new ones at the end
SCENARIOS = {
    "paper": ("one positive patch, 5 dB, T = 64 at 512 Hz", {}, None, None),
    "negative": ("as paper, negative polarity", dict(polarity="negative"), None, None),
    "two-patches": (
        "two patches, random polarity",
        dict(n_patches=2, polarity="random"), None, None,
    ),
    "three-patches": (
        "three patches, random polarity, orders 0-5",
        dict(n_patches=3, polarity="random", orders=(0, 5)), None, None,
    ),
    "snr-0": ("as paper, 0 dB", dict(snr_db=0.0), None, None),
    "snr-20": ("as paper, 20 dB", dict(snr_db=20.0), None, None),
    "epoch-256hz": (
        "256 Hz, -0.2 to 0.8 s (T = 256, 20 % baseline)",
        dict(sfreq=256.0, n_times=256, baseline=0.2), None, None,
    ),
    "background": (
        "brain background noise (200 random sources) at 5 dB",
        dict(noise="background"), None, None,
    ),
    "spikes": (
        "neural-mass spikes and oscillations, random polarity, 500 Hz",
        dict(waveforms=("spike", "oscillation"), polarity="random", sfreq=500.0,
             n_times=128),
        None, None,
    ),
    "sphere-head": (
        "data from a 3-shell spherical head, electrodes moved 3 mm",
        {}, "sphere", None,
    ),
    "conductivity": (
        "skull conductivity 0.0125 S/m, electrodes moved 4 mm",
        {}, "conductivity", None,
    ),
    "32-channels": ("as paper, a random 32 of the 90 channels", {}, None, 32),
    "mne-dipoles": (
        "1-3 dipoles of either sign made by MNE-Python (simulate_sparse_stc, "
        "add_noise: ad-hoc covariance, IIR-coloured), 5 dB, T = 128 at 250 Hz",
        _mne_dipoles, None, None,
    ),
    "focal": (
        "one single-region source, random polarity (where sLORETA is near exact)",
        dict(orders=(0, 0), polarity="random"), None, None,
    ),
    "sereega-16": (
        "the Table I SEREEGA simulator in a 16-sample window (a Gaussian "
        "burst filling it), 5 dB",
        _sereega_short, None, None,
    ),
}  # fmt: skip


def _check_scenarios(scenarios):
    if scenarios is None:
        return list(SCENARIOS)
    if isinstance(scenarios, str):
        scenarios = [scenarios]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"Unknown scenario(s) {unknown}; known: {list(SCENARIOS)}.")
    return list(scenarios)


def simulate_scenario(name, n, *, seed):
    """Simulate a scenario's test set.

    Parameters
    ----------
    name : str
        A key of :data:`SCENARIOS`.
    n : int
        Number of samples.
    seed : int
        Test seed.

    Returns
    -------
    sim : Simulation
        Test data; ``eeg`` holds the scenario's channels only.
    fwd : mne.Forward
        The template forward on those channels (what the inverse uses).
    """
    import mne

    from ..forward import TEMPLATE_CH_NAMES, read_template_forward
    from ..forward.variants import TEST_VARIANTS, make_variant_leadfield
    from ..simulation.broad import simulate_broad

    _check_scenarios([name])
    _, overrides, variant, n_channels = SCENARIOS[name]
    rng = np.random.default_rng([int(seed), list(SCENARIOS).index(name)])
    if callable(overrides):
        sim = overrides(n, rng)
        sim.meta["scenario"] = name
        return sim, read_template_forward(verbose=False)
    kwargs = dict(_PAPER, **overrides)
    leadfield = None
    if variant is not None:
        leadfield = make_variant_leadfield(**TEST_VARIANTS[variant], verbose=False)
    sim = simulate_broad(
        n, seed=rng, leadfield=leadfield,
        spike_banks=(100, 101), verbose=False, **kwargs,
    )  # fmt: skip
    fwd = read_template_forward(verbose=False)
    if n_channels is not None:
        rng = np.random.default_rng([int(seed), 10_000])
        keep = np.sort(rng.choice(len(TEMPLATE_CH_NAMES), n_channels, replace=False))
        sim.eeg = np.ascontiguousarray(sim.eeg[:, keep])
        fwd = mne.pick_channels_forward(
            fwd, [TEMPLATE_CH_NAMES[k] for k in keep], ordered=True, verbose=False
        )
    sim.meta["scenario"] = name
    return sim, fwd


@verbose
def run_generalisation(
    methods, *, n=200, seed=20_261_202, scenarios=None, batch_size=50,
    progress=True, verbose=None,
):  # fmt: skip
    """Score methods on every generalisation scenario.

    Parameters
    ----------
    methods : sequence of str
        Registered benchmark methods (see :func:`mne_mmnet.bench.list_methods`).
    n : int
        Samples per scenario.
    seed : int
        Test seed (training never uses :func:`simulate_broad` with an integer
        seed list of this form).
    scenarios : list of str | None
        Subset of :data:`SCENARIOS` (default: all).
    batch_size : int
        Samples per solver call.
    progress : bool
        Progress bars.
    %(verbose)s

    Returns
    -------
    results : dict
        ``{scenario: run_benchmark results}`` plus ``"_meta"`` (n, seed,
        descriptions).
    """
    from ..forward import read_template_adjacency
    from .run import run_benchmark

    _validate_type(n, "int-like", "n")
    scenarios = _check_scenarios(scenarios)
    adjacency = read_template_adjacency()
    out = dict(_meta=dict(n=int(n), seed=int(seed), scenarios={}))
    for name in scenarios:
        sim, fwd = simulate_scenario(name, int(n), seed=seed)
        logger.info(f"Scenario {name}: {SCENARIOS[name][0]}")
        out["_meta"]["scenarios"][name] = SCENARIOS[name][0]
        out[name] = run_benchmark(
            sim, fwd, adjacency, methods=methods, batch_size=batch_size,
            progress=progress, verbose=False,
        )  # fmt: skip
    return out


def format_generalisation(results, *, reference="sLORETA"):
    """Markdown table: one row per scenario and method.

    Columns: global LE, ratio of global LE to the reference method's, LE
    (order-5 neighbourhood), AUC, PSNR.
    """
    meta = results["_meta"]
    lines = [
        f"{meta['n']} samples per scenario, test seed {meta['seed']}. Global LE: "
        "distance from each patch seed to the largest |estimate| in its "
        "hemisphere at the seed's peak time (mm); LE: the paper's, order-5 "
        "neighbourhood (mm); ratio: global LE / "
        f"{reference}'s global LE.",
        "",
        "| scenario | method | global LE | ratio | LE | AUC % | PSNR dB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, res in results.items():
        if name == "_meta":
            continue
        ref = res["methods"].get(reference, {}).get("metrics", {})
        ref_le = ref.get("global_localization_error", np.nan)
        for method, entry in res["methods"].items():
            m = entry["metrics"]
            gle = m["global_localization_error"]
            lines.append(
                f"| {name} | {method} | {gle:.2f} | {gle / ref_le:.2f} | "
                f"{m['localization_error']:.2f} | {100 * m['auc']:.2f} | "
                f"{m['psnr']:.2f} |"
            )
    return "\n".join(lines) + "\n"
