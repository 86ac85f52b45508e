"""The learned start gate: sign invariance, the mixture, its fitting rule."""

import numpy as np
import pytest
import torch

from mne_mmnet.networks import MMNet, SoftReLUAutoencoder, StartGate, start_features
from mne_mmnet.networks.gate import FEATURE_NAMES, FEATURES_VERSION
from mne_mmnet.solver import initial_estimate, normalize_sources, solve_mm
from mne_mmnet.solver.subspace import subspace_scan
from mne_mmnet.training.gate import _chosen_le, fit_start_gate


def _problem(seed=0, n_ch=9, n_src=30, n_t=14):
    gen = torch.Generator().manual_seed(seed)
    L = torch.randn(n_ch, n_src, generator=gen, dtype=torch.float64)
    L = L - L.mean(0)
    y = torch.randn(3, n_ch, n_t, generator=gen, dtype=torch.float64)
    return y - y.mean(1, keepdim=True), L


def _prior(n_src):
    torch.manual_seed(1)
    return SoftReLUAutoencoder(n_src, hidden=(11, 6), odd=True).double()


def test_features_and_gate_are_sign_invariant():
    y, L = _problem()
    prior = _prior(L.shape[1])
    s = normalize_sources(initial_estimate(y, L, init="sloreta"))
    p = prior(s)
    f = start_features(s, p, y, L)
    assert f.shape == (3, len(FEATURE_NAMES))
    assert torch.isfinite(f).all()
    torch.testing.assert_close(start_features(-s, -p, -y, L), f)
    # the scan's subspace, passed in, gives the features computed from y
    _, subspace = subspace_scan(y, L, return_subspace=True)
    torch.testing.assert_close(start_features(s, p, y, L, subspace=subspace), f)
    gate = StartGate(seed=0).double()
    g = gate(s, p, y, L)
    assert ((g > 0) & (g < 1)).all()
    torch.testing.assert_close(gate(-s, -p, -y, L), g)


def test_features_measure_what_they_name():
    """A one-region source seen without noise: its peak and fits are exact."""
    y, L = _problem(n_t=5)
    src = 7
    x = torch.zeros(1, L.shape[1], 5, dtype=torch.float64)
    x[0, src] = torch.tensor([0.1, 1.0, -0.5, 0.2, 0.0])
    y = L @ x
    one_hot = normalize_sources(x)
    f = dict(zip(FEATURE_NAMES, start_features(one_hot, one_hot, y, L)[0].tolist()))
    assert f["peak share of s"] == pytest.approx(1.0)
    assert f["log spread of s"] == pytest.approx(np.log(1 / L.shape[1]))
    assert f["fit of the region at the peak of s, all times"] == pytest.approx(1.0)
    assert f["fit of the best single region, all times"] == pytest.approx(1.0)
    assert f["first singular value share of the data"] == pytest.approx(1.0)
    assert f["channels / 90 (the template's count)"] == pytest.approx(9 / 90)
    # the prior's output with another time course (any scale and sign per
    # time) still explains the data fully, one scale per time
    shaped = one_hot * torch.tensor([2.0, -0.3, 5.0, 1.0, 0.7])
    f = dict(zip(FEATURE_NAMES, start_features(one_hot, shaped, y, L)[0].tolist()))
    assert f["fit of Phi(s), one scale per time, signal subspace"] == pytest.approx(1.0)
    assert f["fit of the span of the fields of Phi(s), signal subspace"] == (
        pytest.approx(1.0)
    )
    assert f["fit of s, signal subspace, all times"] == pytest.approx(1.0)
    # a prior output on another region (the one whose field is most alike)
    # explains the share cos^2 of the two fields: a closed form for both fits
    unit = L / L.norm(dim=0)
    cos2 = (unit.T @ unit[:, src]) ** 2
    cos2[src] = 0
    near = int(cos2.argmax())
    other = torch.zeros_like(one_hot)
    other[0, near] = torch.tensor([1.0, -2.0, 0.5, 0.3, 3.0])
    f = dict(zip(FEATURE_NAMES, start_features(one_hot, other, y, L)[0].tolist()))
    for name in (
        "fit of Phi(s), one scale per time, signal subspace",
        "fit of the span of the fields of Phi(s), signal subspace",
    ):
        assert f[name] == pytest.approx(float(cos2[near]), abs=1e-5)


def test_time_by_time_fit_ignores_the_time_course_of_the_prior():
    """Noisy data: rescaling Phi(s) per time leaves its fit unchanged."""
    y, L = _problem()
    prior = _prior(L.shape[1])
    s = normalize_sources(initial_estimate(y, L, init="sloreta"))
    p = prior(s)
    name = "fit of Phi(s), one scale per time, signal subspace"
    k = FEATURE_NAMES.index(name)
    scales = torch.linspace(-2.0, 3.0, y.shape[2]).clamp_min(0.1) * torch.tensor(
        [1.0, -1.0] * (y.shape[2] // 2)
    )
    before, after = start_features(s, p, y, L), start_features(s, p * scales, y, L)
    torch.testing.assert_close(after[:, k], before[:, k])
    assert ((before[:, k] > 0) & (before[:, k] <= 1 + 1e-12)).all()


def test_gate_of_other_features_version_is_refused():
    gate = StartGate(seed=0)
    assert gate.config == dict(hidden=[32, 32], features=FEATURES_VERSION)
    assert isinstance(StartGate(**gate.config), StartGate)
    # version 1 read the prior's time course as a whole
    with pytest.raises(ValueError, match="version 1 of the start features"):
        StartGate(features=1)
    with pytest.raises(ValueError, match="version 1 of the start features"):
        MMNet(_prior(30), None, init="gated", gate=dict(hidden=[8], features=1))
    # a new gate's config without the version: the current one
    model = MMNet(_prior(30), None, init="gated", gate=dict(hidden=[8]))
    assert model.gate.config["features"] == FEATURES_VERSION


@pytest.mark.parametrize("logit, expected", [(60.0, "linear"), (-60.0, "prior")])
def test_gated_start_mixes_the_two_starts(logit, expected):
    y, L = _problem()
    prior = _prior(L.shape[1])
    gate = StartGate(seed=0).double()
    with torch.no_grad():  # a gate that always says the same
        last = gate.mlp[-1]
        last.weight.zero_()
        last.bias.fill_(logit)
    s = normalize_sources(initial_estimate(y, L, init="sloreta"))
    # the other branch is the sparse subspace-scan estimate
    want = normalize_sources(subspace_scan(y, L)) if expected == "linear" else prior(s)
    got = initial_estimate(y, L, init="gated", prior=prior, gate=gate)
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="needs the start gate"):
        initial_estimate(y, L, init="gated", prior=prior)
    model = MMNet(prior, None, init="gated", gate=gate, n_iter=2).double()
    torch.testing.assert_close(model.initial_estimate(y, L), want)
    rebuilt = MMNet.from_config(model.config)
    assert rebuilt.init == "gated" and isinstance(rebuilt.gate, StartGate)
    # solve_mm with the model starts there too: zero iterations return it
    x = solve_mm(y, L, model=model, n_iter=0, dtype="float64")
    torch.testing.assert_close(x, normalize_sources(want))
    with pytest.raises(ValueError, match="needs a prior and a start gate"):
        MMNet(prior, None, init="gated")


def test_fitted_gate_picks_the_better_start():
    """Expected-LE fitting recovers a rule hidden in one feature.

    The linear start is better (by a random margin) exactly where feature 3
    is positive: the fitted gate's choice reaches the oracle's error, far
    below either start alone.
    """
    rng = np.random.default_rng(0)

    def examples(n):
        f = rng.standard_normal((n, len(FEATURE_NAMES)))
        margin = rng.uniform(1, 20, n)
        base = rng.uniform(0, 10, n)
        linear_better = f[:, 3] > 0
        return dict(
            features=torch.as_tensor(f),
            le_linear=np.where(linear_better, base, base + margin),
            le_prior=np.where(linear_better, base + margin, base),
        )

    train, val = examples(2000), examples(500)
    gate, history = fit_start_gate(train, val, epochs=300, val_every=50, seed=0)
    oracle = np.minimum(val["le_linear"], val["le_prior"]).mean()
    alone = min(val["le_linear"].mean(), val["le_prior"].mean())
    chosen = _chosen_le(gate.double(), val)
    assert chosen < oracle + 0.05 * (alone - oracle)
    assert [h["step"] for h in history] == list(range(0, 301, 50))
    kept = min(h["val_le"] for h in history)
    assert kept < history[0]["val_le"]


def test_train_gate_tool_writes_a_gated_model(tmp_path):
    """tools/train_gate.py, tiny: a loadable gated model with its record."""
    import subprocess
    import sys
    from pathlib import Path

    from mne_mmnet.pretrained import load_model

    tool = Path(__file__).parents[1] / "tools" / "train_gate.py"
    args = ["--out", str(tmp_path), "--train-batches", "2", "--val-batches", "1",
            "--workers", "1", "--epochs", "5", "--seed", "3"]  # fmt: skip
    subprocess.run([sys.executable, str(tool), *args], check=True, timeout=600)
    net = load_model(tmp_path / "model.pt", verbose=False)
    assert net.init == "gated" and isinstance(net.gate, StartGate)
    record = net.metadata["start_gate"]
    val = record["validation"]
    assert val["n"] == 16 and record["batches"]["seeds"] == [3, 4]
    assert val["le_oracle"] <= min(val["le_linear"], val["le_prior"])
    assert "--train-batches 2 --val-batches 1" in record["command"]
    # the gate it replaces (the shipped one) scored on the same examples
    replaced = record["validation_of_replaced_gate"]
    assert replaced["n"] == 16 and replaced["le_prior"] == val["le_prior"]
    assert replaced["le_gate_expected"] != val["le_gate_expected"]
    # refitting reuses the examples and records the options that made them
    subprocess.run([sys.executable, str(tool), "--out", str(tmp_path), "--refit",
                    "--epochs", "5"], check=True, timeout=600)  # fmt: skip
    again = load_model(tmp_path / "model.pt", verbose=False).metadata["start_gate"]
    assert again["command"] == record["command"]
    assert again["validation"] == val
    # a fit on the union of saved example sets: both sets' samples, in order
    other = tmp_path / "other"
    subprocess.run([sys.executable, str(tool), "--out", str(other), "--train-batches",
                    "1", "--val-batches", "1", "--workers", "1", "--epochs", "5",
                    "--seed", "5", "--n-times", "12", "20"],
                   check=True, timeout=600)  # fmt: skip
    shorter = torch.load(other / "examples.pt", weights_only=False)["options"]
    assert shorter["n_times"] == [12, 20]
    union = tmp_path / "union"
    cache = [tmp_path / "examples.pt", other / "examples.pt"]
    subprocess.run([sys.executable, str(tool), "--out", str(union), "--epochs", "5",
                    "--examples", str(cache[0]), "--examples", str(cache[1])],
                   check=True, timeout=600)  # fmt: skip
    assert not (union / "examples.pt").exists()  # nothing simulated
    joined = load_model(union / "model.pt", verbose=False).metadata["start_gate"]
    assert joined["validation"]["n"] == 32 and joined["train"]["n"] == 48
    sets = joined["batches"]["example_sets"]
    assert [s["seed"] for s in sets] == [3, 5]
    assert [s["train_batches"] for s in sets] == [2, 1]
    assert [s.get("n_times") for s in sets] == [None, [12, 20]]
    assert "--train-batches" not in joined["command"]
    assert joined["command"].endswith(f"--examples {cache[0]} --examples {cache[1]}")
    parts = [torch.load(c, weights_only=False)["val"] for c in cache]
    expected = np.concatenate([p["le_prior"] for p in parts]).mean()
    assert joined["validation"]["le_prior"] == pytest.approx(expected)


def test_train_gate_tool_drops_a_gate_of_older_features(tmp_path):
    """A saved gate of version-1 features: load_model refuses it, the tool
    keeps the prior and curvature and drops the gate to refit it."""
    import importlib.util
    from pathlib import Path

    from mne_mmnet.pretrained import load_model, save_model

    model = MMNet(_prior(30), None, init="gated", gate=StartGate(seed=0), n_iter=2)
    fname = save_model(model, tmp_path / "new.pt", metadata=dict(note="kept"))
    content = torch.load(fname, weights_only=True)
    # a file saved before gates recorded their features' version: version 1
    del content["config"]["gate"]["features"]
    torch.save(content, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="version 1 of the start features"):
        load_model(tmp_path / "old.pt", verbose=False)
    tool = Path(__file__).parents[1] / "tools" / "train_gate.py"
    spec = importlib.util.spec_from_file_location("train_gate", tool)
    train_gate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_gate)
    net = train_gate._load_to_refit(str(tmp_path / "old.pt"))
    assert net.gate is None and net.init == "prior"
    assert net.metadata == dict(note="kept", replaced_gate_features=1)
    for key, value in model.prior.state_dict().items():
        torch.testing.assert_close(net.prior.state_dict()[key], value.float())
    # a gate of the current features loads as saved
    same = train_gate._load_to_refit(str(fname))
    assert isinstance(same.gate, StartGate) and same.init == "gated"
