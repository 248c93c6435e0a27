"""Checkpoints: exact resume, atomic completion, pruning, corruption, weight export."""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from components.training import checkpoint as ckpt
from components.training.config import EngineConfig
from components.training.distributed import seed_everything
from components.training.engine import Trainer
from tests.components.training._train_script import dataset, loss_fn, make_model

torch.set_num_threads(1)


def _cfg(**kw) -> EngineConfig:
    base = dict(
        lr=2e-2, total_steps=10, warmup_steps=2, min_lr_ratio=0.1, micro_batch=8, grad_accum=2, grad_clip=1.0
    )
    return EngineConfig(**{**base, **kw})


def _batches(mb: int = 8):
    x, y = dataset()

    def batches(i: int):
        s = (i * mb) % len(x)
        return x[s : s + mb], y[s : s + mb]

    return batches


def _train(
    cfg: EngineConfig, steps: int, ckpt_dir: Path | None, model_seed: int = 0
) -> tuple[Trainer, object]:
    trainer = Trainer(make_model(model_seed), cfg, loss_fn, ckpt_dir=ckpt_dir)
    return trainer, trainer.fit(_batches(), steps=steps, progress=False)


@pytest.mark.parametrize("stage", [2, 3])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, stage):
    """6 updates, a new process-like Trainer (other initial weights) resumes, 4 more: bit-identical.

    The loss draws from torch (dropout, noise), numpy and python RNGs and the LR is mid-schedule,
    so any missing piece of state (optimizer, scheduler, step, RNG) changes the result.
    """
    cfg = _cfg(zero_stage=stage, checkpoint_every=3)
    reference, ref_result = _train(cfg, 10, None)
    _, first = _train(cfg, 6, tmp_path / "ck")
    assert first.checkpoints == ["step-00000003", "step-00000006"]
    resumed, result = _train(cfg, 10, tmp_path / "ck", model_seed=123)

    assert result.resumed_from == 6 and result.steps == 10
    expected, got = reference.full_state_dict(), resumed.full_state_dict()
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert result.losses == ref_result.losses  # history restored, then continued identically


def test_resume_needs_the_rng_states(tmp_path):
    """Control for the test above: with the RNG files gone the resumed run drifts."""
    cfg = _cfg(checkpoint_every=3)
    reference, _ = _train(cfg, 10, None)
    _train(cfg, 6, tmp_path / "ck")
    step6 = tmp_path / "ck" / "step-00000006"
    marker = json.loads((step6 / ckpt.MARKER).read_text())
    (step6 / "rng_rank00000.pt").unlink()
    del marker["files"]["rng_rank00000.pt"]
    (step6 / ckpt.MARKER).write_text(json.dumps(marker))
    resumed, result = _train(cfg, 10, tmp_path / "ck")
    assert result.resumed_from == 6
    expected, got = reference.full_state_dict(), resumed.full_state_dict()
    assert any(not torch.equal(expected[n], got[n]) for n in expected)


def test_incomplete_checkpoints_are_ignored_with_a_warning(tmp_path, caplog):
    cfg = _cfg(checkpoint_every=2, keep_checkpoints=5)
    ck = tmp_path / "ck"
    _train(cfg, 4, ck)
    # a folder without marker (as if renamed by hand) and a killed run's temporary tag
    shutil.copytree(ck / "step-00000004", ck / "step-00000006")
    (ck / "step-00000006" / ckpt.MARKER).unlink()
    (ck / ".tmp-step-00000008").mkdir()
    (ck / ".tmp-step-00000008" / "mp_rank_00_model_states.pt").write_bytes(b"half a file")

    with caplog.at_level(logging.WARNING, logger="components.training.checkpoint"):
        trainer, result = _train(cfg, 6, ck)
    assert result.resumed_from == 4
    text = caplog.text
    assert "step-00000006" in text and "no completion marker" in text
    assert ".tmp-step-00000008" in text
    # the run then wrote a real step 6 over the markerless one and cleaned the temporary tag
    assert (ck / "step-00000006" / ckpt.MARKER).is_file()
    assert ckpt.verify(ck / "step-00000006") is None
    assert not (ck / ".tmp-step-00000008").exists()
    assert trainer.step == 6


def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    cfg = _cfg(checkpoint_every=2, keep_checkpoints=3)
    ck = tmp_path / "ck"
    _train(cfg, 4, ck)
    victim = ck / "step-00000004" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    victim.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING, logger="components.training.checkpoint"):
        _, result = _train(cfg, 5, ck)
    assert result.resumed_from == 2
    assert "step-00000004" in caplog.text and "sha256" in caplog.text


def test_keep_checkpoints_prunes_and_latest_points_to_the_newest(tmp_path):
    cfg = _cfg(checkpoint_every=1, keep_checkpoints=2)
    ck = tmp_path / "ck"
    _, result = _train(cfg, 5, ck)
    assert result.checkpoints == [f"step-{s:08d}" for s in range(1, 6)]
    assert sorted(p.name for p in ck.glob("step-*")) == ["step-00000004", "step-00000005"]
    assert (ck / ckpt.LATEST).read_text() == "step-00000005"
    marker = json.loads((ck / "step-00000005" / ckpt.MARKER).read_text())
    assert marker["step"] == 5 and marker["world_size"] == 1 and marker["zero_stage"] == 2
    assert {"mp_rank_00_model_states.pt", "rng_rank00000.pt"} <= set(marker["files"])
    assert all(len(e["sha256"]) == 64 and e["size"] > 0 for e in marker["files"].values())


def test_resume_refuses_a_checkpoint_written_with_other_settings(tmp_path):
    ck = tmp_path / "ck"
    _train(_cfg(checkpoint_every=2), 2, ck)
    with pytest.raises(ValueError, match=r"lr: checkpoint 0\.02, now 0\.05.*another ckpt_dir"):
        _train(_cfg(lr=5e-2, checkpoint_every=2), 4, ck)
    # bookkeeping settings may change
    _, result = _train(_cfg(checkpoint_every=3, keep_checkpoints=4), 4, ck)
    assert result.resumed_from == 2
    # starting over on top of an earlier run's checkpoints would mix two runs
    fresh = Trainer(make_model(0), _cfg(checkpoint_every=2), loss_fn, ckpt_dir=ck)
    with pytest.raises(ValueError, match=r"earlier run \(up to step-00000004\)"):
        fresh.fit(_batches(), steps=4, resume=False, progress=False)


@pytest.mark.parametrize("stage", [2, 3])
def test_export_weights_loads_into_a_fresh_model(tmp_path, stage):
    trainer, _ = _train(_cfg(zero_stage=stage), 4, None)
    path = tmp_path / "out" / "model.safetensors"
    trainer.export_weights(path)

    state = load_file(str(path))
    assert all(t.dtype == torch.float32 for t in state.values())
    fresh = make_model(seed=99)
    fresh.load_state_dict(state, strict=True)
    x, _ = dataset()
    trainer.engine.module.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), trainer.engine(x))
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left nothing behind


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    seed_everything(5)
    state = ckpt.rng_state()
    torch.save(state, tmp_path / "rng.pt")
    first = (torch.rand(3), np.random.rand(3), random.random())
    seed_everything(77)
    ckpt.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_commit_and_find_latest_without_deepspeed(tmp_path, caplog):
    """The filesystem protocol alone: marker, rename, latest pointer, pruning, verification."""
    for step in (1, 2, 3):
        tmp = tmp_path / f".tmp-{ckpt.tag_for(step)}"
        tmp.mkdir()
        (tmp / "weights.bin").write_bytes(bytes([step]) * 100)
        final = ckpt.commit(tmp_path, tmp.name, step, {"note": "x"}, keep=2)
        assert final == tmp_path / ckpt.tag_for(step) and not tmp.exists()
    assert [c.step for c in ckpt.complete_checkpoints(tmp_path)] == [2, 3]
    assert (tmp_path / ckpt.LATEST).read_text() == "step-00000003"
    assert ckpt.find_latest(tmp_path).step == 3

    (tmp_path / "step-00000003" / "weights.bin").write_bytes(b"short")
    assert "has 5 bytes" in ckpt.verify(tmp_path / "step-00000003")
    with caplog.at_level(logging.WARNING, logger="components.training.checkpoint"):
        info = ckpt.find_latest(tmp_path)
    assert info.step == 2 and info.meta["note"] == "x" and "step-00000003" in caplog.text
    assert ckpt.find_latest(tmp_path / "missing") is None
    with pytest.raises(ValueError, match="keep must be >= 1"):
        ckpt.prune(tmp_path, 0)
