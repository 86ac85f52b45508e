"""Learned baselines: they train, share MM-Net's conventions, and do what they say."""

import json

import numpy as np
import pytest
import torch
from conftest import make_sphere_forward

from mne_mmnet.architectures import build_model
from mne_mmnet.learned_baselines import (
    LEARNED_BASELINES,
    EUnet,
    MetaCurvatureSolver,
    OPTEnet,
    baseline_config,
)
from mne_mmnet.learned_baselines.embedding import _scaled_problem, log_cosh
from mne_mmnet.solver import energy, normalize_sources
from mne_mmnet.training.loop import meta_gradient_step
from mne_mmnet.training.losses import meta_loss

N_CHANNELS, N_SOURCES, N_TIMES = 12, 30, 8


def _small(name, n_sources=N_SOURCES, n_times=N_TIMES, **options):
    """A small model of each architecture (seeded)."""
    sizes = {
        "4dvarnet": dict(hidden=8),
        "modgrad": dict(rank=2),
        "optenet": dict(n_embed=n_sources + 10, hidden=(8, 4)),
        "eunet": dict(n_embed=n_sources + 10, hidden=(8, 4), embed_rank=3),
    }
    torch.manual_seed(0)
    config = baseline_config(
        name, n_sources=n_sources, n_times=n_times, prior_hidden=(6,),
        **{**sizes.get(name, {}), **options},
    )  # fmt: skip
    torch.manual_seed(0)
    return build_model(config).double()


def _problem(n=8, seed=0, n_times=N_TIMES):
    rng = np.random.default_rng(seed)
    L = rng.standard_normal((N_CHANNELS, N_SOURCES))
    L -= L.mean(axis=0)
    x = np.zeros((n, N_SOURCES, n_times))
    t = np.arange(n_times)
    for i in range(n):
        start = rng.integers(0, N_SOURCES - 3)
        x[i, start : start + 3] = np.exp(-0.5 * ((t - n_times / 2) / 1.5) ** 2)
    y = np.einsum("cs,nst->nct", L, x)
    y += 0.05 * np.abs(y).max() * rng.standard_normal(y.shape)
    return (torch.tensor(a) for a in (y, L, x))


@pytest.mark.parametrize("name", sorted(LEARNED_BASELINES))
def test_few_training_steps_lower_the_loss(name):
    """Adam on the meta-loss (full backprop through 4 iterations) lowers it."""
    y, L, x = _problem()
    model = _small(name, n_iter=4).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss_now():
        with torch.no_grad():
            x0 = model.initial_estimate(y, L)
            x_hat, _, _ = model.iterate(x0, y, L)
            return float(meta_loss(x_hat, x, model.prior).total.mean())

    before = loss_now()
    for _ in range(25):
        opt.zero_grad()
        meta_gradient_step(model, y, L, x, model.initial_estimate(y, L))
        opt.step()
    after = loss_now()
    assert after < 0.9 * before, (name, before, after)


@pytest.mark.parametrize("name", sorted(LEARNED_BASELINES))
def test_output_conventions_and_state(name):
    """(batch, n_sources, n_times), unit RMS, finite; state continues exactly."""
    y, L, _ = _problem(n=3)
    model = _small(name).eval()
    with torch.no_grad():
        out = model(y, L)
        x0 = model.initial_estimate(y, L)
        full, _, _ = model.iterate(x0, y, L, n_iter=5)
        head, state, _ = model.iterate(x0, y, L, n_iter=3)
        tail, _, _ = model.iterate(head, y, L, n_iter=2, state=state)
    assert out.shape == (3, N_SOURCES, N_TIMES)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.pow(2).mean((1, 2)), torch.ones(3, dtype=out.dtype))
    torch.testing.assert_close(tail, full)


@pytest.mark.parametrize("name", sorted(LEARNED_BASELINES))
def test_save_load_round_trip(name, tmp_path):
    from mne_mmnet import load_model, save_model

    y, L, _ = _problem(n=2)
    model = _small(name).float().eval()
    with torch.no_grad():  # move the weights off their initial values
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_model(model, tmp_path / "m.pt", metadata={"note": name}, verbose=False)
    loaded = load_model(tmp_path / "m.pt", device="cpu", verbose=False)
    assert type(loaded) is type(model)
    assert loaded.metadata == {"note": name}
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(y.float(), L.float()), model(y.float(), L.float())
        )


def test_unknown_architecture():
    with pytest.raises(ValueError, match="Unknown learned-solver architecture"):
        build_model({"architecture": "nope"})
    with pytest.raises(ValueError, match="Unknown learned baseline"):
        baseline_config("nope", n_sources=3, n_times=2)
    with pytest.raises(ValueError, match="Unknown FourDVarNet config keys"):
        build_model({"architecture": "4dvarnet", "bogus": 1})


def test_invalid_arguments():
    with pytest.raises(ValueError, match="two convolutions"):
        OPTEnet(n_sources=4, n_embed=6, hidden=(8,))
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        EUnet(n_sources=4, n_embed=6, kernel_size=4)
    with pytest.raises(ValueError, match="built for 5 sources"):
        MetaCurvatureSolver(dict(n_sources=5, hidden=[4]), n_sources=4, n_times=3)
    y, L, _ = _problem(n=1)
    with pytest.raises(ValueError, match="n_iter must be >= 0"):
        _small("4dvarnet")(y, L, n_iter=-1)


def test_bench_random_start_is_seeded(tmp_path):
    """A baseline with a random start gives the same benchmark row twice."""
    from mne_mmnet import save_model
    from mne_mmnet.bench.methods import _learned_factory

    fwd, _, _ = make_sphere_forward(40)
    n_src = fwd["sol"]["data"].shape[1]
    model = _small("4dvarnet", n_sources=n_src, init="random").float()
    save_model(model, tmp_path / "m.pt", verbose=False)
    eeg = np.random.default_rng(0).standard_normal((2, fwd["sol"]["data"].shape[0], 8))
    outs = [
        _learned_factory(fwd, path=tmp_path / "m.pt", seed=seed)(eeg)
        for seed in (0, 0, 1)
    ]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.allclose(outs[0], outs[2])


def test_gradient_solvers_start_as_normalised_gradient_descent():
    """With identity factors / no modulation, one step is plain descent."""
    y, L, _ = _problem(n=2)
    x0 = normalize_sources(torch.randn(2, N_SOURCES, N_TIMES, dtype=torch.float64))
    for name in ("meta-curvature", "modgrad"):
        model = _small(name, n_iter=1).eval()
        with torch.no_grad():
            x1, _, trace = model.iterate(x0, y, L)
        xr = x0.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(
            energy(xr, y, L, prior=model.prior).total.sum(), xr
        )
        unit = grad / grad.pow(2).mean((1, 2), keepdim=True).sqrt()
        expected = normalize_sources(x0 - model.init_step * unit)
        torch.testing.assert_close(x1, expected)
        # the trace holds the energy of the start and of the result
        e0 = energy(x0, y, L, prior=model.prior).total
        torch.testing.assert_close(trace["total"][0], e0)


def test_fixed_length_models_refuse_other_lengths():
    y, L, _ = _problem(n=1, n_times=N_TIMES + 1)
    model = _small("meta-curvature")
    with pytest.raises(ValueError, match=f"built for {N_TIMES} time samples"):
        model(y, L)
    assert _small("4dvarnet").fixed_n_times is None
    assert model.fixed_n_times == N_TIMES


def test_meta_curvature_parameter_count_grows_with_time():
    """Its time factor is n_times**2: the reason it cannot change domain."""
    short = _small("meta-curvature", n_times=8)
    long = _small("meta-curvature", n_times=20)
    assert long.n_parameters - short.n_parameters == 20**2 - 8**2


def test_log_cosh():
    t = torch.linspace(-30, 30, 601, dtype=torch.float64)
    torch.testing.assert_close(log_cosh(t), torch.log(torch.cosh(t)))
    assert torch.isfinite(log_cosh(torch.tensor([1e4, -1e4]))).all()


@pytest.mark.parametrize("cls", [OPTEnet, EUnet])
def test_embedding_step_is_gradient_step(cls):
    """One step equals z - h (E'L'(LEz - y) + grad phi), grad phi by FD."""
    y, L, _ = _problem(n=1)
    torch.manual_seed(1)
    model = cls(n_sources=N_SOURCES, n_embed=N_SOURCES + 6, hidden=(5, 3), n_iter=1)
    model = model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        x0 = model.initial_estimate(y, L)
        _, (z1, _), _ = model.iterate(x0, y, L)
        y_u, L_u = _scaled_problem(y, L)
        # z0 exactly as the model lifts the start
        xn = normalize_sources(x0)
        pred = L_u @ xn
        xn = xn * (pred * y_u).sum() / pred.pow(2).sum()
        E = model.embedding_at(0.0)
        z0 = E.T @ xn
        z0_flat = z0.flatten()

        def phi(flat):
            return model.potential(flat.view_as(z0), 0.0).sum()

        eps = 1e-6
        fd = torch.zeros_like(z0_flat)
        for i in range(z0_flat.numel()):
            dz = torch.zeros_like(z0_flat)
            dz[i] = eps
            fd[i] = (phi(z0_flat + dz) - phi(z0_flat - dz)) / (2 * eps)
        data_grad = (L_u @ E).T @ ((L_u @ E) @ z0 - y_u)
        expected = z0 - model.log_step[0].exp() * (data_grad + fd.view_as(z0))
    torch.testing.assert_close(z1, expected, rtol=1e-6, atol=1e-8)


def test_optenet_descends_its_energy_with_small_steps():
    """OPTEnet is gradient descent on |LEz - y|^2 / 2 + phi(z)."""
    y, L, _ = _problem(n=2)
    model = OPTEnet(n_sources=N_SOURCES, n_embed=N_SOURCES + 6, hidden=(5, 3))
    model = model.double().eval()
    with torch.no_grad():
        model.log_step.fill_(np.log(0.05))
        y_u, L_u = _scaled_problem(y, L)
        E = model.embedding_at(0.0)

        def objective(z):
            r = L_u @ (E @ z) - y_u
            return 0.5 * r.pow(2).sum((1, 2)) + model.potential(z, 0.0)

        x, state, _ = model.iterate(model.initial_estimate(y, L), y, L, n_iter=1)
        values = [objective(state[0])]
        for _ in range(8):
            x, state, _ = model.iterate(x, y, L, n_iter=1, state=state)
            values.append(objective(state[0]))
    values = torch.stack(values)
    assert (values[1:] < values[:-1]).all(), values


def test_bench_rows_from_a_folder(tmp_path):
    """Saved baselines become benchmark rows with MM-Net's scale convention."""
    from mne_mmnet import save_model
    from mne_mmnet.bench import format_table, register_learned_baselines
    from mne_mmnet.bench import methods as bench_run
    from mne_mmnet.bench._cli import _runs_on
    from mne_mmnet.problem import restore_scale

    fwd, _, _ = make_sphere_forward(40)
    n_src = fwd["sol"]["data"].shape[1]
    for name in ("4dvarnet", "meta-curvature"):
        model = _small(name, n_sources=n_src, n_times=16).float()
        save_model(model, tmp_path / f"{name}-sereega.pt", verbose=False)
    (tmp_path / "unrelated.pt").write_bytes(b"")
    try:
        names = register_learned_baselines(tmp_path)
        assert names == ["4DVarNet (sereega)", "Meta-Curvature (sereega)"]
        rng = np.random.default_rng(0)
        gain = fwd["sol"]["data"] - fwd["sol"]["data"].mean(axis=0)
        src = np.zeros((3, n_src, 16))
        src[:, 5, 4:12] = 1.0
        eeg = np.einsum("cs,nst->nct", fwd["sol"]["data"], src)
        eeg += 0.01 * rng.standard_normal(eeg.shape)
        methods = bench_run.list_methods()
        for name in names:
            solver = bench_run.make_method(name, fwd)
            out = solver(eeg, sfreq=100.0)
            assert out.shape == (3, n_src, 16) and out.dtype == np.float32
            # amplitudes restored like MM-Net's rows: refitting a L x to the
            # (average-referenced) data gives a = 1
            y = eeg - eeg.mean(axis=1, keepdims=True)
            refit = restore_scale(out.astype(np.float64), gain, y)
            np.testing.assert_allclose(refit, out, rtol=1e-4, atol=1e-7)
            assert solver.settings["n_parameters"] > 0
        assert _runs_on(methods["Meta-Curvature (sereega)"], 16)
        assert not _runs_on(methods["Meta-Curvature (sereega)"], 500)
        assert _runs_on(methods["4DVarNet (sereega)"], 500)
        # table: parameter column and the paper's within / cross-domain rows
        entry = dict(
            metrics=dict(localization_error=1.0, auc=0.9, nmse=0.1, psnr=20.0,
                         time_error=1.0),
            runtime_per_sample_s=0.01, settings=dict(n_parameters=2_500_000),
        )  # fmt: skip
        results = {"methods": {"4DVarNet (sereega)": entry, "4DVarNet (nmm)": entry}}
        table = format_table(results, kind="sereega")
        assert "| 4DVarNet (sereega) | 2.50 (3.01) | 1.00 (9.17) |" in table
        assert "| 4DVarNet (nmm) | 2.50 (3.01) | 1.00 (20.68) |" in table
    finally:
        for name in list(bench_run._REGISTRY):
            if name.endswith("(sereega)") and "MM-Net" not in name:
                bench_run._REGISTRY.pop(name)
    with pytest.raises(ValueError, match="No learned baselines"):
        register_learned_baselines(tmp_path / "..")


def test_apply_mmnet_inverse_refuses_a_baseline(tmp_path):
    from mne_mmnet import save_model
    from mne_mmnet.inverse._operator import _resolve_model

    save_model(_small("optenet", n_sources=994).float(), tmp_path / "o.pt",
               verbose=False)  # fmt: skip
    with pytest.raises(TypeError, match="holds a OPTEnet"):
        _resolve_model(str(tmp_path / "o.pt"), "cpu")


def test_cli_trains_a_fixed_length_baseline(tmp_path):
    """`mne-mmnet train --architecture meta-curvature` sizes it from --crop."""
    from mne_mmnet import load_model
    from mne_mmnet.cli import main
    from mne_mmnet.simulation import Simulation, save_simulation

    y, L, x = _problem(n=8, n_times=12)
    sim = Simulation(
        sources=x.numpy().astype(np.float32), eeg=y.numpy().astype(np.float32),
        seeds=np.full((8, 1), -1, np.int64), patch_masks=x.numpy().any(axis=2),
        sfreq=100.0, meta={"kind": "test"},
    )  # fmt: skip
    save_simulation(sim, tmp_path / "train", verbose=False)
    np.save(tmp_path / "L.npy", L.numpy())
    args = [
        "train", "--architecture", "meta-curvature", "--data",
        str(tmp_path / "train"), "--out", str(tmp_path / "out"), "--leadfield",
        str(tmp_path / "L.npy"), "--prior-hidden", "6", "--crop", "8",
        "--batch-size", "4", "--max-steps", "2", "--init", "sloreta",
        "--no-progress", "--verbose", "error",
    ]  # fmt: skip
    assert main(args) == 0
    model = load_model(tmp_path / "out" / "model.pt", device="cpu", verbose=False)
    assert isinstance(model, MetaCurvatureSolver)
    assert model.n_times == 8 and model.init == "sloreta"
    log = (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()
    assert any(json.loads(line).get("phase") == "bilevel" for line in log)
