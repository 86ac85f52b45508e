"""The generalist training loop: runs, selects by global LE, resumes exactly."""

import json

import torch

from mne_mmnet.pretrained import load_model
from mne_mmnet.training.broad import train_broad

TINY = dict(
    batch_size=2, prior_steps=2, val_every=2, val_batches=1, progress=False,
    ranges=dict(n_times=(32, 36), subset_prob=0.0, variant_prob=0.0),
)  # fmt: skip


def test_tiny_run_writes_selected_weights_and_resumes_exactly(tmp_path):
    """The GPU script's code path on the CPU, in a tiny configuration."""
    best = train_broad(tmp_path / "a", minutes=5, max_steps=2, **TINY)
    model = load_model(best, device="cpu")
    meta = model.metadata
    assert meta["selection"].startswith("lowest validation global LE")
    assert meta["validation"] and meta["validation"][0]["step"] == 0
    text = (tmp_path / "a" / "train_log.jsonl").read_text()
    log = [json.loads(x) for x in text.splitlines()]
    assert {e["phase"] for e in log} == {"prior", "bilevel", "validation"}
    checks = [e for e in log if e["phase"] == "validation"]
    assert [e["step"] for e in checks] == [0, 2]
    assert all("val_le" in e and "val_auc" in e for e in checks)
    # one step, stop, resume for the second: the same weights as straight through
    train_broad(tmp_path / "b", minutes=5, max_steps=1, **TINY)
    # a step logged after the last checkpoint (a killed run) is redone once;
    # one logged just before it is kept even where its rounded time is later
    fname = tmp_path / "b" / "train_log.jsonl"
    saved = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    first = [json.loads(x) for x in fname.read_text().splitlines()]
    first[-1]["time"] = saved["progress"]["elapsed"] + 0.05
    first.append(dict(phase="bilevel", step=2, time=1e9))
    fname.write_text("".join(json.dumps(e) + "\n" for e in first))
    train_broad(tmp_path / "b", minutes=5, max_steps=2, **TINY)
    straight = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert straight["progress"]["step"] == resumed["progress"]["step"] == 2
    text = (tmp_path / "b" / "train_log.jsonl").read_text()
    entries = [(e["phase"], e["step"]) for e in map(json.loads, text.splitlines())]
    assert sorted(entries) == sorted((e["phase"], e["step"]) for e in log)
    for key, value in straight["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=1e-5, atol=1e-7)


def test_carry_on_continues_counters_time_and_history(tmp_path):
    """A weights-only resume: counters, time and validation history go on."""
    best = train_broad(tmp_path / "a", minutes=5, max_steps=2, **TINY)
    model = load_model(best, device="cpu")
    done = model.metadata["progress"]
    tiny = dict(TINY, prior_steps=4, val_every=100, peak_weight=0.1)
    train_broad(tmp_path / "c", minutes=5, max_steps=done["step"] + 1,
                init_from=model, carry_on=True, **tiny)  # fmt: skip
    ckpt = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)
    assert ckpt["progress"]["prior_step"] == 4
    assert ckpt["progress"]["step"] == done["step"] + 1
    assert ckpt["progress"]["elapsed"] > done["elapsed"]
    text = (tmp_path / "c" / "train_log.jsonl").read_text()
    log = [json.loads(x) for x in text.splitlines()]
    earlier = [e for e in log if e.get("earlier_run")]
    assert earlier == [dict(e, earlier_run=True) for e in model.metadata["validation"]]
    # the first check of the new run is at the counters it took over
    new = [e for e in log if e["phase"] == "validation" and "earlier_run" not in e]
    first = new[0]
    assert (first["step"], first["prior_step"]) == (done["step"], done["prior_step"])
    prior = [e["step"] for e in log if e["phase"] == "prior"]
    assert prior == list(range(done["prior_step"] + 1, 5))


def test_resume_takes_this_calls_learning_rates(tmp_path):
    """A resumed run anneals: its optimisers take the rates it is given."""
    train_broad(tmp_path, minutes=5, max_steps=1, lr=1e-4, prior_lr=1e-3, **TINY)
    first = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert first["prior_optimizer"]["param_groups"][0]["lr"] == 1e-3
    train_broad(tmp_path, minutes=5, max_steps=2, lr=5e-5, prior_lr=2e-4, **TINY)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["progress"]["step"] == 2
    assert [g["lr"] for g in ckpt["optimizer"]["param_groups"]] == [5e-5]
    assert [g["lr"] for g in ckpt["prior_optimizer"]["param_groups"]] == [2e-4]


def test_frozen_parts_keep_their_weights_and_the_rest_trains(tmp_path):
    """Curvature-only training of a gated model: prior and gate stay bit for bit."""
    import pytest

    from mne_mmnet.networks import MMNet
    from mne_mmnet.training import default_config

    config = dict(default_config(), init="gated", gate=dict(hidden=(4,)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        init = MMNet.from_config(config)
    tiny = dict(TINY, prior_steps=0)
    with pytest.raises(ValueError, match="freeze includes the prior"):
        train_broad(tmp_path / "x", minutes=5, max_steps=1, config=config,
                    init_from=init, freeze=("prior",), **TINY)  # fmt: skip
    with pytest.raises(ValueError, match="Invalid value for the 'freeze'"):
        train_broad(tmp_path / "y", minutes=5, max_steps=1, config=config,
                    init_from=init, freeze=("bias",), **tiny)  # fmt: skip
    plain = MMNet.from_config(default_config())  # no gate to copy
    with pytest.raises(ValueError, match="which init_from does not provide"):
        train_broad(tmp_path / "z", minutes=5, max_steps=1, config=config,
                    init_from=plain, freeze=("gate",), **tiny)  # fmt: skip
    train_broad(tmp_path / "f", minutes=5, max_steps=1, config=config,
                init_from=init, freeze=("prior", "gate"), **tiny)  # fmt: skip
    ckpt = torch.load(tmp_path / "f" / "checkpoint.pt", weights_only=True)
    assert ckpt["progress"]["step"] == 1 and ckpt["args"]["freeze"] == ["prior", "gate"]
    start = init.state_dict()
    moved = {k for k, v in ckpt["model"].items() if not torch.equal(v, start[k])}
    assert moved, "nothing trained"
    assert all(k.startswith("curvature.") for k in moved), sorted(moved)[:3]
    # the gate was warm-started (not left at the new model's own draw)
    gate = {k: v for k, v in start.items() if k.startswith("gate.")}
    assert gate and all(torch.equal(ckpt["model"][k], v) for k, v in gate.items())


def test_draw_batch_takes_the_number_of_patches():
    """``n_patches`` reaches the simulator; its default is the simulator's own.

    Batches drawn before the option existed passed no ``n_patches``: with the
    simulator's default they stay the same, so older runs resume exactly.
    """
    import inspect

    from mne_mmnet.simulation import simulate_broad
    from mne_mmnet.training.broad import BROAD_BATCHES, draw_batch

    default = inspect.signature(simulate_broad).parameters["n_patches"].default
    assert BROAD_BATCHES["n_patches"] == default
    ranges = dict(variant_prob=0.0, subset_prob=0.0, n_times=(32, 33))
    four = draw_batch(1, 0, 3, ranges=dict(ranges, n_patches=(4, 4)))
    assert ((four["sim"].seeds >= 0).sum(1) == 4).all()
    one = draw_batch(1, 0, 3, ranges=dict(ranges, n_patches=(1, 1)))
    assert ((one["sim"].seeds >= 0).sum(1) == 1).all()
