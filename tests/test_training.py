"""Tests of the bilevel training: meta-loss, gradients, loop, DDP, CLI."""

import json
import os
import socket

import numpy as np
import pytest
import torch

from mne_mmnet.networks.mmnet import MMNet
from mne_mmnet.pretrained import load_model
from mne_mmnet.training import meta_gradient_step, meta_loss, train
from mne_mmnet.training._data import _crop

N_SOURCES, N_CHANNELS, N_TIMES = 24, 8, 10


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny problems run fastest (and reproducibly) on one thread."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)


def _dataset(n=16, seed=0, n_times=N_TIMES):
    """Small extended-source problem: (eeg, sources, leadfield) as numpy."""
    rng = np.random.default_rng(seed)
    L = rng.standard_normal((N_CHANNELS, N_SOURCES))
    src = np.zeros((n, N_SOURCES, n_times), np.float32)
    t = np.arange(n_times)
    for i in range(n):
        start = rng.integers(0, N_SOURCES - 3)
        centre = rng.uniform(0.3, 0.7) * n_times
        src[i, start : start + 3] = np.exp(-0.5 * ((t - centre) / 1.5) ** 2)
    eeg = np.einsum("cs,nst->nct", L, src)
    eeg += 0.05 * np.abs(eeg).max() * rng.standard_normal(eeg.shape)
    return eeg.astype(np.float32), src, L


def _config(n_iter=3, bound="analytic"):
    return dict(
        prior=dict(n_sources=N_SOURCES, hidden=[6]),
        curvature=dict(n_sources=N_SOURCES, embed=4, hidden=4),
        bound=bound,
        n_iter=n_iter,
    )


def _tensors(eeg, src, L, dtype=torch.float64):
    L = torch.tensor(L - L.mean(axis=0), dtype=dtype)
    y = torch.tensor(eeg, dtype=dtype)
    return y - y.mean(dim=1, keepdim=True), L, torch.tensor(src, dtype=dtype)


def test_meta_loss_matches_numpy():
    """Eq. (11) against a direct numpy evaluation."""
    torch.manual_seed(0)
    model = MMNet.from_config(_config()).double()
    x_hat = torch.randn(3, N_SOURCES, N_TIMES, dtype=torch.float64)
    x_gt = torch.randn(3, N_SOURCES, N_TIMES, dtype=torch.float64)
    with torch.no_grad():
        loss = meta_loss(x_hat, x_gt, model.prior)
        # the prior sees the unit-RMS rescaling of x_hat, as in the energy
        rms = x_hat.flatten(1).norm(dim=1) / (N_SOURCES * N_TIMES) ** 0.5
        phi = model.prior(x_hat / rms[:, None, None]).numpy()
    a, b = x_hat.numpy().reshape(3, -1), x_gt.numpy().reshape(3, -1)
    phi = phi.reshape(3, -1)

    def cos(u, v):
        return (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)

    np.testing.assert_allclose(loss.ground_truth.numpy(), 1 - cos(b, a), rtol=1e-12)
    np.testing.assert_allclose(loss.prior.numpy(), 1 - cos(a, phi), rtol=1e-12)
    np.testing.assert_allclose(loss.total.numpy(), 2 - cos(b, a) - cos(a, phi))
    assert not meta_loss(x_hat, x_gt).prior.any()


def _grads(model, batch, **kwargs):
    model.zero_grad(set_to_none=True)
    meta_gradient_step(model, *batch, **kwargs)
    return {
        n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }


def test_jfb_matches_full_backprop():
    """JFB equals full backprop when it tracks every iteration (I = 1 or k = I)."""
    torch.manual_seed(0)
    model = MMNet.from_config(_config()).double()
    eeg, src, L = _dataset(n=3)
    y, L_t, x_gt = _tensors(eeg, src, L)
    x0 = model.initial_estimate(y, L_t, seed=0)
    batch = (y, L_t, x_gt, x0)
    full = _grads(model, batch, gradient="full", n_iter=1)
    jfb = _grads(model, batch, gradient="jfb", jfb_last=1, n_iter=1)
    assert full.keys() == jfb.keys()
    names = {n.split(".")[0] for n in full}
    assert names == {"prior", "curvature"}  # both networks get gradients
    for name in full:
        torch.testing.assert_close(jfb[name], full[name], rtol=1e-12, atol=1e-15)
    # k = I tracks everything too; k < I truncates (gradients differ)
    full3 = _grads(model, batch, gradient="full", n_iter=3)
    jfb33 = _grads(model, batch, gradient="jfb", jfb_last=3, n_iter=3)
    jfb13 = _grads(model, batch, gradient="jfb", jfb_last=1, n_iter=3)
    for name in full3:
        torch.testing.assert_close(jfb33[name], full3[name], rtol=1e-12, atol=1e-15)
    diff = max(float((jfb13[n] - full3[n]).abs().max()) for n in full3)
    assert diff > 1e-6


def test_crop_holds_peak():
    """Crops have the requested length, contain the peak, and are seeded."""
    eeg, src, _ = _dataset(n=6, n_times=40)
    eeg, src = torch.tensor(eeg), torch.tensor(src)
    idx = torch.arange(6)
    e1, s1 = _crop(eeg, src, idx, 12, seed=0, stream=0)
    e2, s2 = _crop(eeg, src, idx, 12, seed=0, stream=0)
    assert s1.shape == (6, N_SOURCES, 12) and e1.shape == (6, N_CHANNELS, 12)
    assert torch.equal(s1, s2) and torch.equal(e1, e2)
    peak = src.square().sum(1).amax(1)
    torch.testing.assert_close(s1.square().sum(1).amax(1), peak)


def _read_log(fname):
    return [json.loads(line) for line in fname.read_text().splitlines()]


def _fixed_batch_loss(model, y, L, x_gt, x0):
    with torch.no_grad():
        x_hat, _, _ = model.iterate(x0, y, L)
        return float(meta_loss(x_hat, x_gt, model.prior).total.mean())


def test_training_lowers_meta_loss(tmp_path):
    """A few Adam steps lower eq. (11) on a fixed batch; outputs are written."""
    eeg, src, L = _dataset(n=16)
    torch.manual_seed(0)
    model = MMNet.from_config(_config()).double()
    y, L_t, x_gt = _tensors(eeg[:8], src[:8], L)
    x0 = model.initial_estimate(y, L_t, seed=1)
    before = _fixed_batch_loss(model, y, L_t, x_gt, x0)
    result = train(
        (eeg, src),
        out_dir=tmp_path,
        val_data=(eeg[:8], src[:8]),
        model=model,
        leadfield=L,
        n_epochs=4,
        batch_size=8,
        lr=2e-2,
        prior_steps=2,
        seed=0,
        device="cpu",
        dtype="float64",
        progress=False,
        checkpoint_every=3,
    )
    after = _fixed_batch_loss(result.model, y, L_t, x_gt, x0)
    assert after < before - 0.05, (before, after)
    rows = _read_log(tmp_path / "train_log.jsonl")
    bilevel = [r for r in rows if r["phase"] == "bilevel"]
    assert [r["step"] for r in bilevel] == list(range(1, 9))
    assert {"time", "loss", "loss_gt", "loss_prior", "epoch"} <= set(bilevel[0])
    # the start of the bilevel phase, then every epoch's end
    val = [r for r in rows if r["phase"] == "validation"]
    assert [r["step"] for r in val] == [0, 2, 4, 6, 8]
    assert len([r for r in rows if r["phase"] == "prior"]) == 2
    assert (tmp_path / "loss.png").stat().st_size > 1000
    loaded = load_model(tmp_path / "model.pt", device="cpu")
    assert loaded.metadata["progress"]["step"] == 8
    # the best model is the one with the lowest validation meta-loss
    best = load_model(tmp_path / "model_best.pt", device="cpu")
    best_row = min(val, key=lambda r: r["val_loss"])
    assert best.metadata["progress"]["val_step"] == best_row["step"]
    # its card carries the run's whole validation history and step count
    assert [h["step"] for h in best.metadata["validation"]] == [r["step"] for r in val]
    assert best.metadata["total_steps"] == 8
    assert best.metadata["selected_step"] == best_row["step"]
    # completing the card left the weights as trained (float64 here)
    raw = torch.load(tmp_path / "model_best.pt", weights_only=True)
    assert {v.dtype for v in raw["state_dict"].values() if v.is_floating_point()} == {
        torch.float64
    }


def _train_kwargs(L):
    # R-MM-Net: no projection, so every parameter receives a gradient
    return dict(
        model=_config(bound=None),
        leadfield=L,
        n_epochs=1,
        batch_size=4,
        lr=1e-2,
        seed=3,
        device="cpu",
        dtype="float64",
        progress=False,
    )


def test_resume_and_time_budget(tmp_path):
    """Stopping and resuming equals one straight run; the budget stops cleanly."""
    eeg, src, L = _dataset(n=16)
    straight = train((eeg, src), out_dir=tmp_path / "a", **_train_kwargs(L))
    train((eeg, src), out_dir=tmp_path / "b", max_steps=2, **_train_kwargs(L))
    resumed = train((eeg, src), out_dir=tmp_path / "b", resume=True, **_train_kwargs(L))
    steps = [h["step"] for h in resumed.history if h["phase"] == "bilevel"]
    assert steps == [1, 2, 3, 4]
    for (n, p), q in zip(straight.model.named_parameters(), resumed.model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-12, atol=0, msg=n)
    budget = train(
        (eeg, src), out_dir=tmp_path / "c", max_minutes=0, **_train_kwargs(L)
    )
    assert [h["step"] for h in budget.history if h["phase"] == "bilevel"] == [1]
    assert (tmp_path / "c" / "checkpoint.pt").is_file()
    assert (tmp_path / "c" / "model.pt").is_file()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank, world_size, port, data, out_dir):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
    )
    torch.set_num_threads(1)
    eeg, src, L = data
    kwargs = _train_kwargs(L)
    train((eeg, src), out_dir=out_dir, max_steps=2, **kwargs)


@pytest.mark.ddp
def test_ddp_matches_single_process(tmp_path):
    """2 gloo processes x 2 samples == 1 process x 4 samples (same global batch)."""
    eeg, src, L = _dataset(n=16)
    single = train(
        (eeg, src), out_dir=tmp_path / "single", max_steps=2, **_train_kwargs(L)
    )
    torch.multiprocessing.spawn(
        _ddp_worker,
        args=(2, _free_port(), (eeg, src, L), tmp_path / "ddp"),
        nprocs=2,
        join=True,
    )
    # compare the float64 weights as saved by rank 0 (load_model casts to float32)
    saved = torch.load(tmp_path / "ddp" / "model.pt", weights_only=True)
    assert saved["metadata"]["progress"]["step"] == 2
    torch.manual_seed(3)  # the initial weights of both runs (seed=3)
    before = MMNet.from_config(_config(bound=None)).double().state_dict()
    for name, p in single.model.state_dict().items():
        q = saved["state_dict"][name]
        assert q.dtype == torch.float64
        torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-12, msg=name)
        assert not torch.equal(p, before[name])  # training moved every tensor
    logs = _read_log(tmp_path / "ddp" / "train_log.jsonl")
    single_rows = [h for h in single.history if h["phase"] == "bilevel"]
    for a, b in zip(logs, single_rows):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-10)


def test_cli_train(tmp_path):
    """`mne-mmnet train` on a simulation directory, then --resume."""
    from mne_mmnet.cli import main
    from mne_mmnet.simulation import Simulation, save_simulation

    eeg, src, L = _dataset(n=12)
    seeds = np.full((12, 1), -1, np.int64)
    sim = Simulation(
        sources=src,
        eeg=eeg,
        seeds=seeds,
        patch_masks=src.any(axis=2),
        sfreq=100.0,
        meta={"kind": "test"},
    )
    save_simulation(sim, tmp_path / "train", verbose=False)
    save_simulation(sim.subset(np.arange(4)), tmp_path / "val", verbose=False)
    np.save(tmp_path / "L.npy", L)
    (tmp_path / "config.json").write_text(json.dumps(_config()))
    base = [
        "train",
        "--data",
        str(tmp_path / "train"),
        "--val-data",
        str(tmp_path / "val"),
        "--out",
        str(tmp_path / "out"),
        "--config",
        str(tmp_path / "config.json"),
        "--leadfield",
        str(tmp_path / "L.npy"),
        "--batch-size",
        "4",
        "--no-progress",
        "--verbose",
        "error",
    ]
    assert main([*base, "--epochs", "2", "--max-steps", "2"]) == 0
    # 12 samples / batch 4 = 3 steps per epoch: the resumed run does step 3
    assert main([*base, "--epochs", "1", "--resume"]) == 0
    rows = _read_log(tmp_path / "out" / "train_log.jsonl")
    assert [r["step"] for r in rows if r["phase"] == "bilevel"] == [1, 2, 3]
    # validation at the start, at the early stop (step 2) and at the end of
    # epoch 0 (step 3)
    assert [r["step"] for r in rows if r["phase"] == "validation"] == [0, 2, 3]
    model = load_model(tmp_path / "out" / "model.pt", device="cpu")
    assert model.metadata["progress"]["epoch"] == 1


def test_peak_localization_loss_rewards_the_peak_in_the_patch():
    """Lower when the estimate's maximum is in the patch; scale- and sign-free."""
    from mne_mmnet.training.losses import peak_localization_loss

    gen = torch.Generator().manual_seed(0)
    n, t = 20, 6
    x_gt = torch.zeros(2, n, t, dtype=torch.float64)
    x_gt[0, 3:5, 2] = torch.tensor([1.0, 0.5])  # left patch, seed 3, peak t=2
    x_gt[1, 14, 4] = -2.0  # right patch, seed 14
    seeds = np.array([[3, -1], [14, -1]])
    base = 0.1 * torch.rand(2, n, t, generator=gen, dtype=torch.float64)
    good, bad = base.clone(), base.clone()
    good[0, 3, 2], good[1, 14, 4] = 1.0, 1.0
    bad[0, 8, 2], bad[1, 17, 4] = 1.0, 1.0  # peaks in the right hemisphere, elsewhere
    lg = peak_localization_loss(good, x_gt, seeds)
    lb = peak_localization_loss(bad, x_gt, seeds)
    assert (lg < lb).all()
    torch.testing.assert_close(peak_localization_loss(-7.0 * good, x_gt, seeds), lg)
    # the other hemisphere does not count
    other = good.clone()
    other[0, 15, 2] = 50.0
    torch.testing.assert_close(peak_localization_loss(other, x_gt, seeds)[0], lg[0])
    # closed form for one seed: cross-entropy of the normalised truth
    est = good[0, :10, 2] / good[0, :10, 2].max()
    target = x_gt[0, :10, 2].abs() / x_gt[0, :10, 2].abs().sum()
    expected = -(target * torch.log_softmax(20.0 * est, 0)).sum()
    torch.testing.assert_close(lg[0], expected)
    # differentiable, finite at an all-zero estimate
    zero = torch.zeros_like(good, requires_grad=True)
    loss = peak_localization_loss(zero, x_gt, seeds)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(zero.grad).all()
    torch.testing.assert_close(loss, torch.full((2,), np.log(10.0), dtype=loss.dtype))


def test_model_selection_by_global_le_then_auc():
    """With metrics the kept model is the one with the lowest global LE, AUC
    breaking ties; without them the lowest meta-loss."""
    from mne_mmnet.training._session import _improves

    state = dict(best_val=float("inf"), best_le=float("inf"), best_auc=0.0)
    runs = [  # (global LE, AUC, meta-loss)
        (20.0, 0.80, 0.5), (18.0, 0.70, 0.9), (18.0, 0.75, 0.9),
        (18.0, 0.74, 0.1), (19.0, 0.99, 0.1),
    ]  # fmt: skip
    kept = [
        _improves(dict(val_global_le=le, val_auc=a, val_loss=loss), state)
        for le, a, loss in runs
    ]
    assert kept == [True, True, True, False, False]
    assert (state["best_le"], state["best_auc"]) == (18.0, 0.75)
    state = dict(best_val=float("inf"))
    kept = [_improves(dict(val_loss=loss), state) for loss in (0.5, 0.7, 0.4)]
    assert kept == [True, False, True] and state["best_val"] == 0.4
