"""Training on the broad simulator: the generalist default model.

Each batch is drawn afresh from :func:`mne_mmnet.simulation.simulate_broad`
with a seed that depends only on ``(seed, step)``: a run resumes exactly and
never sees the same sample twice. Per batch: a sampling rate (128-1000 Hz), a
window (``n_times`` range), a pre-stimulus baseline or none, a data-generating
head model (the template or a perturbed variant) and a channel subset (all 90
or a random subset). The inverse always uses the template leadfield on the
batch's channels, with the average reference, as
:func:`mne_mmnet.apply_mmnet_inverse` does. With probability ``sparse_prob``
a batch holds only focal sources (patch orders ``sparse_orders``: single
regions and their first neighbours), where a linear inverse such as sLORETA
is already nearly exact and a prior fitted to extended patches would move the
peak away. With probability ``nmm_prob`` a batch comes from the neural-mass
simulator instead (:func:`mne_mmnet.simulation.simulate_nmm`: Jansen-Rit
patches in a Jansen-Rit background, the template head, a sampling rate among
those it supports, 0-20 dB).
"""

import math

import numpy as np
import torch
from mne.utils import logger

from ..problem import average_reference
from ._broad_state import (
    _carry_on,
    _check_parts,
    _Clock,
    _freeze,
    _Run,
    _validated_at,
    _warm_start,
)
from ._steps import _finite_update, beats_best, default_config, meta_gradient_step
from .losses import meta_loss, peak_localization_loss

#: ranges of the per-batch draws
BROAD_BATCHES = dict(
    sfreq=(128.0, 1000.0),
    n_times=(32, 256),
    baseline_prob=0.5,
    baseline=(0.1, 0.4),
    variant_prob=0.5,
    subset_prob=0.4,
    subset_size=(24, 89),
    n_patches=(1, 3),
    orders=(0, 5),
    sparse_prob=0.0,
    sparse_orders=(0, 1),
    nmm_prob=0.0,
)
#: sampling rates of the neural-mass batches (its integration step is 0.5 ms)
_NMM_RATES = (125.0, 200.0, 250.0, 400.0, 500.0, 1000.0)
_VAL_SEED_OFFSET = 7_919


def draw_batch(
    seed, step, batch_size, *, ranges=None, spike_banks=(0, 1, 2, 3),
    dtype=torch.float32, device="cpu",
):  # fmt: skip
    """Simulate one training batch; the same ``(seed, step)`` gives the same batch.

    Returns
    -------
    batch : dict
        ``y`` (batch, n_channels, n_times) average-referenced data on the
        batch's channels (float64), ``L`` the template leadfield on those
        channels, referenced, ``x_gt`` the true sources, ``sim`` the
        :class:`~mne_mmnet.simulation.Simulation` and ``info`` the draws.
    """
    from ..forward import read_template_forward
    from ..forward.variants import TRAIN_VARIANTS, make_variant_leadfield
    from ..simulation.broad import simulate_broad

    ranges = dict(BROAD_BATCHES, **(ranges or {}))
    rng = np.random.default_rng([int(seed), int(step) + 2**32])  # step may be < 0
    log_f = rng.uniform(*np.log(ranges["sfreq"]))
    sfreq = float(round(math.exp(log_f)))
    n_times = int(round(math.exp(rng.uniform(*np.log(ranges["n_times"])))))
    baseline = 0.0
    if rng.uniform() < ranges["baseline_prob"]:
        baseline = float(rng.uniform(*ranges["baseline"]))
    template = read_template_forward(verbose=False)["sol"]["data"]
    variant = None
    leadfield = template
    if rng.uniform() < ranges["variant_prob"]:
        variant = int(rng.integers(len(TRAIN_VARIANTS)))
        leadfield = make_variant_leadfield(**TRAIN_VARIANTS[variant], verbose=False)
    n_channels = template.shape[0]
    channels = np.arange(n_channels)
    if rng.uniform() < ranges["subset_prob"]:
        size = int(rng.integers(ranges["subset_size"][0], ranges["subset_size"][1] + 1))
        channels = np.sort(rng.choice(n_channels, size=size, replace=False))
    orders = tuple(int(o) for o in ranges["orders"])
    # drawn only when asked for, so that older runs' batches stay the same
    if ranges["sparse_prob"] > 0 and rng.uniform() < ranges["sparse_prob"]:
        orders = tuple(int(o) for o in ranges["sparse_orders"])
    # likewise drawn only when asked for
    if ranges.get("nmm_prob", 0.0) > 0 and rng.uniform() < ranges["nmm_prob"]:
        sim, sfreq, baseline, variant = _nmm_batch(batch_size, rng, sfreq, n_times)
        orders = "nmm"
    else:
        sim = simulate_broad(
            batch_size, seed=rng, sfreq=sfreq, n_times=n_times, baseline=baseline,
            orders=orders, leadfield=leadfield, spike_banks=spike_banks,
            n_patches=tuple(int(k) for k in ranges["n_patches"]), verbose=False,
        )  # fmt: skip
    y = torch.as_tensor(sim.eeg[:, channels], dtype=torch.float64)
    y = average_reference(y, 1).to(dtype)
    L = average_reference(torch.as_tensor(template[channels]), 0).to(dtype)
    info = dict(
        sfreq=sfreq, n_times=n_times, baseline=baseline, variant=variant,
        n_channels=len(channels), orders=orders,
    )  # fmt: skip
    x_gt = torch.as_tensor(sim.sources).to(device=device, dtype=dtype)
    return dict(y=y.to(device), L=L.to(device), x_gt=x_gt, sim=sim, info=info)


def _nmm_batch(batch_size, rng, sfreq, n_times):
    """Simulate a neural-mass batch near ``sfreq``: (sim, sfreq, baseline, variant)."""
    from ..simulation.nmm import simulate_nmm

    rates = np.asarray(_NMM_RATES)
    sfreq = float(rates[np.argmin(np.abs(np.log(rates / sfreq)))])
    sim = simulate_nmm(
        batch_size, seed=int(rng.integers(2**31)), sfreq=sfreq, n_times=n_times,
        snr_db=float(rng.uniform(0.0, 20.0)), verbose=False,
    )  # fmt: skip
    return sim, sfreq, 0.0, None


def _scores(x_hat, sim):
    """Global LE (mm) and AUC per sample."""
    from ..forward import read_template_forward
    from ..metrics import auc, global_localization_error

    est = x_hat.detach().cpu().double().numpy()
    positions = read_template_forward(verbose=False)["source_rr"]
    le = global_localization_error(
        est, sim.sources, seeds=sim.seeds, positions=positions
    )
    area = auc(est, sim.sources, seeds=sim.seeds, active=sim.patch_masks)
    return le, area


def _validate(run, val_batches):
    model = run.model.eval()
    les, aucs, losses = [], [], []
    with torch.no_grad():
        for batch in val_batches:
            x0 = model.initial_estimate(batch["y"], batch["L"])
            x_hat, _, _ = model.iterate(x0, batch["y"], batch["L"])
            losses.append(meta_loss(x_hat, batch["x_gt"], model.prior).total)
            le, area = _scores(x_hat, batch["sim"])
            les.append(le)
            aucs.append(area)
    model.train()
    le, area = (
        float(np.mean(np.concatenate(les))),
        float(np.nanmean(np.concatenate(aucs))),
    )
    loss = float(torch.cat(losses).mean())
    return dict(val_le=le, val_auc=area, val_loss=loss)


def _prior_step(run, batch, generator, noise_level=0.5):
    """Pretrain the prior on what the solver sees: linear estimates and noisy truth.

    Cosine losses of ``Phi`` at the normalised sLORETA estimate and at the
    noisy truth; with ``peak_weight > 0`` (run argument) also the
    peak-localisation loss of ``Phi`` at the sLORETA estimate
    (:func:`~mne_mmnet.training.losses.peak_localization_loss`).
    """
    from ..solver import initial_estimate, normalize_sources
    from ..solver.objective import cosine_similarity

    model = run.model
    x_lin = initial_estimate(batch["y"], batch["L"], init="sloreta")
    x_lin = normalize_sources(x_lin)
    x_gt = batch["x_gt"].to(x_lin)
    truth = normalize_sources(x_gt)
    noise = torch.randn(truth.shape, generator=generator, dtype=truth.dtype)
    noise = noise.to(truth.device)
    level = noise_level * torch.rand(len(truth), 1, 1, generator=generator)
    level = level.to(truth)
    noisy = normalize_sources(truth + level * noise)
    phi_lin = model.prior(x_lin)
    loss = (1 - cosine_similarity(phi_lin, x_gt)) + (
        1 - cosine_similarity(model.prior(noisy), x_gt)
    )
    weight = run.args.get("peak_weight", 0.0)
    if weight:
        seeds = batch["sim"].seeds
        loss = loss + weight * peak_localization_loss(phi_lin, x_gt, seeds)
    loss.mean().backward()
    return float(loss.detach().mean())


def _keep_if_best(run, scores):
    from ..pretrained import save_model

    better = beats_best(scores["val_le"], scores["val_auc"], run.progress)
    if better:
        meta = dict(
            train_args=run.args,
            progress=dict(run.progress, elapsed=run.elapsed),
            selection="lowest validation global LE (AUC breaks ties)",
            validation=[h for h in run.history() if h.get("phase") == "validation"],
        )
        save_model(
            run.model, run.out_dir / "model_best.pt", metadata=meta, overwrite=True
        )
    return better


def train_broad(
    out_dir,
    *,
    minutes,
    max_steps=None,
    seed=0,
    batch_size=8,
    lr=1e-4,
    prior_steps=600,
    prior_lr=1e-3,
    peak_weight=0.0,
    val_every=50,
    prior_val_every=None,
    val_batches=12,
    checkpoint_minutes=3.0,
    jfb_last=2,
    init_from=None,
    carry_on=False,
    freeze=(),
    config=None,
    prior_batch_size=None,
    ranges=None,
    device="cpu",
    dtype=torch.float32,
    progress=True,
):
    """Train (or resume) the generalist model; see the module docstring.

    ``minutes`` bounds this call's wall time (``max_steps`` the bilevel
    steps); the run resumes from
    ``out_dir/checkpoint.pt`` when present. ``init_from`` (a model) seeds the
    weights of a new run (its prior; its curvature too when configured
    alike); with ``carry_on=True`` the new run also continues its step
    counters, training time and validation history (from the model file's
    metadata) and validates once before its first step. ``config``
    (default :func:`~mne_mmnet.training.default_config`) builds the model;
    the prior's pretraining batches have ``prior_batch_size`` samples
    (default ``2 * batch_size``); ``peak_weight`` weighs the
    peak-localisation term of the prior's loss (see :func:`_prior_step`).
    ``freeze`` names parts (``"prior"``, ``"curvature"``, ``"gate"``) that
    no step updates, e.g. ``("prior", "gate")`` with ``init_from`` the
    shipped model and its ``config`` trains the curvature in the solver as
    shipped (start gate and guarantee included) while the gate, fitted to
    that prior, stays valid; a frozen prior needs ``prior_steps`` no larger
    than the steps already done (no pretraining).
    Validation runs every ``val_every``
    bilevel steps and, if given, every ``prior_val_every`` prior steps.
    Training and validation bound the layer norms at the window length
    rounded up to a power of two (``prior.round_norm_lengths``); a saved
    model is run with the exact length's bound, which is never larger.
    Returns the path of ``model_best.pt``.
    """
    from ..networks import MMNet

    freeze = _check_parts(freeze)
    args = dict(
        seed=seed, batch_size=batch_size, lr=lr, prior_steps=prior_steps,
        prior_lr=prior_lr, peak_weight=peak_weight, val_every=val_every,
        val_batches=val_batches,
        jfb_last=jfb_last, ranges=dict(BROAD_BATCHES, **(ranges or {})),
        prior_batch_size=prior_batch_size or 2 * batch_size,
        prior_val_every=prior_val_every, checkpoint_minutes=checkpoint_minutes,
        freeze=list(freeze),
    )  # fmt: skip
    config = default_config() if config is None else config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MMNet.from_config(config)
    model = model.to(device=device, dtype=dtype)
    # windows of many lengths: layer-norm bounds at lengths rounded up to
    # powers of two, a few entries updated cheaply after each step
    model.prior.round_norm_lengths = True
    run = _Run(out_dir, model, lr, args)
    fresh = not run.restore()
    if fresh and init_from is not None:
        missing = set(freeze) - set(_warm_start(model, init_from))
        if missing:
            raise ValueError(
                f"freeze names {sorted(missing)}, which init_from does not "
                "provide (absent or built differently): they would stay at "
                "their random initialisation."
            )
        if carry_on:
            _carry_on(run, init_from)
    _freeze(model, freeze)
    if "prior" in freeze and run.progress["prior_step"] < prior_steps:
        raise ValueError(
            f"freeze includes the prior, but prior_steps={prior_steps} asks for "
            f"pretraining beyond step {run.progress['prior_step']}; pass "
            "prior_steps=0 (or at most the steps done)."
        )
    val = [
        draw_batch(
            seed + _VAL_SEED_OFFSET,
            k,
            batch_size,
            ranges=ranges,
            dtype=dtype,
            device=device,
        )  # fmt: skip
        for k in range(val_batches)
    ]
    clock = _Clock(minutes, checkpoint_minutes)
    draw = dict(ranges=ranges, dtype=dtype, device=device)
    if fresh and carry_on:
        where = dict(step=run.progress["step"], prior_step=run.progress["prior_step"])
        _validate_and_keep(run, val, **where)
        run.save()
    _prior_phase(run, val, clock, draw, progress)
    if run.progress["prior_step"] >= prior_steps:
        _bilevel_phase(run, val, clock, draw, progress, max_steps)
    run.save()
    return run.out_dir / "model_best.pt"


def _validate_and_keep(run, val, **where):
    scores = _validate(run, val)
    run.log(phase="validation", **where, **scores)
    _keep_if_best(run, scores)
    logger.info(f"{where}: {scores}")


def _prior_phase(run, val, clock, draw, progress):
    """Pretrain the prior; validate every ``prior_val_every`` steps and at the end."""
    from tqdm.auto import tqdm

    args, model = run.args, run.model
    total, every = args["prior_steps"], args["prior_val_every"]
    bar = tqdm(desc="prior", total=total, initial=run.progress["prior_step"],
               disable=not progress)  # fmt: skip
    while run.progress["prior_step"] < total and clock.running:
        step = run.progress["prior_step"]
        batch = draw_batch(args["seed"], -1 - step, args["prior_batch_size"], **draw)
        run.prior_optimizer.zero_grad(set_to_none=True)
        gen = torch.Generator().manual_seed(args["seed"] * 1_000_003 + step)
        loss = _prior_step(run, batch, gen)
        if _finite_update(model.prior.parameters()):
            run.prior_optimizer.step()
        run.progress["prior_step"] += 1
        run.log(phase="prior", step=run.progress["prior_step"], loss=loss)
        bar.update()
        bar.set_postfix(loss=f"{loss:.3f}")
        if every and run.progress["prior_step"] % every == 0:
            _validate_and_keep(run, val, step=0, prior_step=run.progress["prior_step"])
        clock.maybe_save(run)
    bar.close()
    where = dict(step=0, prior_step=run.progress["prior_step"])
    if run.progress["step"] == 0 and where["prior_step"] >= total:
        if not _validated_at(run, **where):
            _validate_and_keep(run, val, **where)
            run.save()


def _bilevel_phase(run, val, clock, draw, progress, max_steps):
    """JFB bilevel steps on fresh batches; validate every ``val_every`` steps."""
    from tqdm.auto import tqdm

    args, model = run.args, run.model
    bar = tqdm(desc="bilevel", initial=run.progress["step"], disable=not progress)
    while clock.running:
        if max_steps is not None and run.progress["step"] >= max_steps:
            break
        batch = draw_batch(args["seed"], run.progress["step"], args["batch_size"],
                           **draw)  # fmt: skip
        x0 = model.initial_estimate(batch["y"], batch["L"])
        run.optimizer.zero_grad(set_to_none=True)
        loss = meta_gradient_step(
            model, batch["y"], batch["L"], batch["x_gt"].to(x0), x0,
            gradient="jfb", jfb_last=args["jfb_last"],
        )  # fmt: skip
        if _finite_update(model.parameters()):
            run.optimizer.step()
        run.progress["step"] += 1
        run.log(phase="bilevel", step=run.progress["step"],
                loss=float(loss.total.mean()), **batch["info"])  # fmt: skip
        bar.update()
        bar.set_postfix(loss=f"{float(loss.total.mean()):.3f}")
        if run.progress["step"] % args["val_every"] == 0:
            _validate_and_keep(run, val, step=run.progress["step"])
        clock.maybe_save(run)
    bar.close()
