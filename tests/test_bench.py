import json

import numpy as np
import pytest
from conftest import make_sphere_forward
from scipy import sparse

from mne_mmnet.bench import (
    PAPER_TABLE_I,
    format_table,
    list_methods,
    register_method,
    run_benchmark,
    write_results,
)
from mne_mmnet.metrics import evaluate


@pytest.fixture(scope="module")
def standin():
    """Sphere-model forward (150 radial sources) with a 6-NN adjacency graph."""
    fwd, _, nn = make_sphere_forward(150, sfreq=512.0)
    dist = np.linalg.norm(nn[:, None] - nn[None], axis=-1)
    near = np.argsort(dist, axis=1)[:, 1:7]
    adj = np.zeros(dist.shape, bool)
    adj[np.repeat(np.arange(150), 6), near.ravel()] = True
    return fwd, sparse.csr_array(adj | adj.T)


@pytest.fixture(autouse=True)
def _clean_registry():
    """Remove the methods these tests register."""
    from mne_mmnet.bench import methods as run

    yield
    run._REGISTRY.pop("test-pinv", None)


def _pinv_factory(fwd):
    leadfield = fwd["sol"]["data"]
    proj = np.eye(len(leadfield)) - 1.0 / len(leadfield)
    kernel = np.linalg.pinv(proj @ leadfield, rcond=1e-3) @ proj

    def solver(eeg, *, sfreq):
        return kernel @ eeg

    solver.settings = {"rcond": 1e-3}
    return solver


def test_registry():
    methods = list_methods()
    for name in ("MNE", "dSPM", "sLORETA", "eLORETA", "classical MM (sLORETA start)"):
        assert name in methods
    register_method("test-pinv", _pinv_factory, description="pseudo-inverse")
    with pytest.raises(ValueError, match="exists"):
        register_method("test-pinv", _pinv_factory)
    register_method("test-pinv", _pinv_factory, overwrite=True)
    with pytest.raises(TypeError, match="callable"):
        register_method("bad", 3)
    with pytest.raises(ValueError, match="commas"):
        register_method("a, b", _pinv_factory)
    with pytest.raises(ValueError, match="not 'all'"):
        register_method("all", _pinv_factory)


def test_run_benchmark_and_outputs(standin, tmp_path):
    from mne_mmnet.simulation import simulate_sereega

    fwd, adjacency = standin
    register_method("test-pinv", _pinv_factory, overwrite=True)
    sim = simulate_sereega(
        8, seed=5, snr_db=5.0, n_times=32, orders=(1, 2), fwd=fwd,
        adjacency=adjacency, verbose=False,
    )  # fmt: skip
    methods = ["MNE", "sLORETA", "test-pinv"]
    results = run_benchmark(
        sim, fwd, adjacency, methods=methods, batch_size=3, progress=False
    )
    assert results["n_samples"] == 8 and list(results["methods"]) == methods
    # batching does not change the scores: compare with one direct evaluation
    from mne_mmnet.bench import make_method

    estimate = make_method("sLORETA", fwd)(sim.eeg, sfreq=sim.sfreq)
    direct = evaluate(
        estimate, sim.sources, seeds=sim.seeds, positions=fwd["source_rr"],
        adjacency=adjacency, sfreq=sim.sfreq, active=sim.patch_masks,
    )  # fmt: skip
    entry = results["methods"]["sLORETA"]
    for key, value in direct.items():
        np.testing.assert_allclose(entry["scores"][key], value)
        assert entry["metrics"][key] == pytest.approx(np.nanmean(value))
    assert entry["settings"]["lambda2"] == pytest.approx(1 / 9)
    assert entry["runtime_per_sample_s"] > 0
    assert results["methods"]["test-pinv"]["settings"] == {"rcond": 1e-3}

    paths = write_results(
        results, tmp_path, tag="tiny", dataset={"seed": 5}, kind="sereega",
        scores=True,
    )  # fmt: skip
    payload = json.loads(paths["json"].read_text())
    assert payload["dataset"] == {"seed": 5}
    assert set(payload["methods"]) == set(methods)
    assert payload["methods"]["MNE"]["metrics"]["auc"] == pytest.approx(
        results["methods"]["MNE"]["metrics"]["auc"]
    )
    assert "mne" in payload["versions"]
    table = paths["table"].read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(methods)  # header + one row per method
    mne_row = next(r for r in rows if r.startswith("| MNE |"))
    assert f"({PAPER_TABLE_I['sereega']['MNE'][0]:.2f})" in mne_row
    with np.load(paths["scores"]) as npz:
        np.testing.assert_allclose(
            npz["sLORETA__auc"], entry["scores"]["auc"], equal_nan=True
        )
    # appending rows for the same test set keeps the earlier ones
    only_mne = {**results, "methods": {"MNE": results["methods"]["MNE"]}}
    only_pinv = {**results, "methods": {"test-pinv": results["methods"]["test-pinv"]}}
    kw = dict(tag="rows", dataset={"seed": 5}, kind="sereega", scores=True)
    write_results(only_mne, tmp_path, **kw)
    paths = write_results(only_pinv, tmp_path, append=True, **kw)
    assert list(json.loads(paths["json"].read_text())["methods"]) == [
        "MNE",
        "test-pinv",
    ]
    assert "| MNE |" in paths["table"].read_text()
    with np.load(paths["scores"]) as npz:
        assert {"MNE__psnr", "test-pinv__psnr"} <= set(npz.files)
    with pytest.raises(ValueError, match="Cannot append"):
        write_results(only_pinv, tmp_path, append=True, **{**kw, "dataset": {}})
    # the same test set written to another folder is the same set
    kw_src = dict(kw, tag="moved", dataset={"seed": 5, "source": "/tmp/a"})
    write_results(only_mne, tmp_path, **kw_src)
    moved = dict(kw_src, dataset={"seed": 5, "source": "elsewhere/b"})
    paths = write_results(only_pinv, tmp_path, append=True, **moved)
    assert set(json.loads(paths["json"].read_text())["methods"]) == {"MNE", "test-pinv"}
    with pytest.raises(ValueError, match="Cannot append"):
        other = dict(kw_src, dataset={"seed": 6, "source": "/tmp/a"})
        write_results(only_pinv, tmp_path, append=True, **other)
    # ... and so is one that also records its storage dtype
    stored = dict(kw_src, dataset={"seed": 5, "source": "c", "dtype": "float64"})
    paths = write_results(only_pinv, tmp_path, append=True, **stored)
    assert set(json.loads(paths["json"].read_text())["methods"]) == {"MNE", "test-pinv"}
    with pytest.raises(ValueError, match="Unknown benchmark method"):
        run_benchmark(sim, fwd, adjacency, methods=["nope"], progress=False)
    with pytest.raises(TypeError, match="sequence of method names"):
        run_benchmark(sim, fwd, adjacency, methods="MNE", progress=False)
    with pytest.raises(ValueError, match="distinct"):
        run_benchmark(sim, fwd, adjacency, methods=["MNE", "MNE"], progress=False)
    with pytest.raises(ValueError, match=r"entries for \['sLORETA'\]"):
        run_benchmark(
            sim, fwd, adjacency, methods=["MNE"], progress=False,
            method_options={"sLORETA": {}},
        )  # fmt: skip
    with pytest.raises(ValueError, match="Invalid value for the 'kind'"):
        write_results(results, tmp_path, tag="bad", kind="nope")
    assert "| test-pinv |" in format_table(results)


def test_cli_end_to_end(tmp_path):
    """``mne-mmnet benchmark`` on 8 template samples writes markdown and JSON."""
    from mne_mmnet.cli import main

    ret = main(
        [
            "benchmark", "-n", "8", "--methods", "MNE,sLORETA", "--seed", "3",
            "--out", str(tmp_path), "--tag", "tiny", "--no-progress",
        ]
    )  # fmt: skip
    assert ret == 0
    payload = json.loads((tmp_path / "results_tiny.json").read_text())
    assert payload["dataset"]["seed"] == 3 and payload["dataset"]["n"] == 8
    assert payload["n_samples"] == 8
    for name in ("MNE", "sLORETA"):
        metrics = payload["methods"][name]["metrics"]
        assert 0 <= metrics["auc"] <= 1 and metrics["localization_error"] >= 0
    table = (tmp_path / "table_tiny.md").read_text()
    assert "| sLORETA |" in table and "(14.82)" in table
    # appending rows of another test set is refused before any method runs
    from mne_mmnet.bench import methods

    def unreachable(fwd, **options):
        raise AssertionError("a method was set up before the append check")

    methods.register_method("never run", unreachable)
    try:
        argv = [
            "benchmark", "-n", "8", "--methods", "never run", "--seed", "4",
            "--out", str(tmp_path), "--tag", "tiny", "--no-progress", "--append",
        ]  # fmt: skip
        assert main(argv) == 2
    finally:
        methods._REGISTRY.pop("never run")
    assert json.loads((tmp_path / "results_tiny.json").read_text()) == payload


def test_generalisation_cli_writes_each_scenario(tmp_path, monkeypatch):
    """Results are rewritten after every scenario; --append merges methods."""
    from mne_mmnet.bench import _cli, generalisation

    argv = ["--suite", "generalisation", "-n", "4", "--methods", "sLORETA",
            "--scenarios", "paper,negative", "--out", str(tmp_path),
            "--no-progress"]  # fmt: skip
    real = generalisation.run_generalisation

    def fail_on_second(methods, *, scenarios, **kwargs):
        if scenarios == ["negative"]:
            raise RuntimeError("killed")
        return real(methods, scenarios=scenarios, **kwargs)

    monkeypatch.setattr(generalisation, "run_generalisation", fail_on_second)
    with pytest.raises(RuntimeError, match="killed"):
        _cli.main(argv)
    record = json.loads((tmp_path / "generalisation.json").read_text())
    assert set(record) == {"_meta", "paper"}  # the finished scenario was kept
    monkeypatch.setattr(generalisation, "run_generalisation", real)
    assert _cli.main(argv) == 0
    argv[5] = "MNE"
    assert _cli.main([*argv, "--append"]) == 0
    record = json.loads((tmp_path / "generalisation.json").read_text())
    assert set(record) == {"_meta", "paper", "negative"}
    assert set(record["negative"]) == {"sLORETA", "MNE"}
    table = (tmp_path / "generalisation.md").read_text()
    assert table.count("| negative | ") == 2
    le = record["paper"]["sLORETA"]["metrics"]["global_localization_error"]
    assert f"| paper | sLORETA | {le:.2f} | 1.00 |" in table
    assert _cli.main([*argv[:6], "--scenarios", "nowhere", "--out", str(tmp_path)]) == 2


def test_generalisation_appends_running_together_keep_each_others_rows(
    tmp_path, monkeypatch
):
    """Two --append runs on other scenarios of one file, one inside the other."""
    from mne_mmnet.bench import _cli, generalisation

    base = ["--suite", "generalisation", "-n", "4", "--out", str(tmp_path),
            "--no-progress"]  # fmt: skip
    assert (
        _cli.main([*base, "--methods", "sLORETA", "--scenarios", "paper,negative"]) == 0
    )
    other = [*base, "--methods", "MNE", "--scenarios", "negative", "--append"]
    real = generalisation.run_generalisation

    def other_run_meanwhile(methods, *, scenarios, **kwargs):
        if scenarios == ["paper"]:  # the other run starts and ends during this one
            monkeypatch.setattr(generalisation, "run_generalisation", real)
            assert _cli.main(other) == 0
        return real(methods, scenarios=scenarios, **kwargs)

    monkeypatch.setattr(generalisation, "run_generalisation", other_run_meanwhile)
    mine = [*base, "--methods", "MNE", "--scenarios", "paper", "--append"]
    assert _cli.main(mine) == 0
    record = json.loads((tmp_path / "generalisation.json").read_text())
    assert set(record["paper"]) == set(record["negative"]) == {"sLORETA", "MNE"}
    commands = record["_meta"]["commands"]
    assert sum("--scenarios negative --append" in c for c in commands) == 1
    assert sum("--scenarios paper --append" in c for c in commands) == 1
    assert not list(tmp_path.glob(".*.tmp"))
