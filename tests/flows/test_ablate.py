"""The ablation variants: params validation and how a variant patches train_dit's params."""

from __future__ import annotations

import pytest

from components.config import ConfigError, validate_section
from components.dit.config import TrainDiTParams
from flows.ablate import main, seed_cache, variant_params


def _ablate(**variants):
    return validate_section("ablate", {"steps": 7, "variants": variants})


def test_variant_patches_switches_steps_and_paths_only():
    train = TrainDiTParams(mosa={"hadc": "on"}, losses={"track_mode": "temporal", "mask": 0.5}, steps=400)
    ablate = _ablate(full={}, no_w={"mosa": {"hadc": "no_w"}}, static={"losses": {"track_mode": "static"}})
    full, no_w, static = (variant_params(train, ablate, v) for v in ("full", "no_w", "static"))
    assert full.mosa == train.mosa and full.losses == train.losses
    assert no_w.mosa.hadc == "no_w" and no_w.losses == train.losses
    assert static.losses.track_mode == "static" and static.losses.mask == 0.5
    for p, name in ((full, "full"), (no_w, "no_w")):
        assert p.steps == 7 and p.warmup_steps == 7 and str(p.checkpoints).endswith(f"ablate/{name}")
        assert p.follow == ablate.follow and p.lr == train.lr
        assert p.cache == p.checkpoints / "cache" and p.cache != train.cache
    with pytest.raises(KeyError, match="unknown ablation variant 'nope'"):
        variant_params(train, ablate, "nope")


def test_seed_cache_links_missing_files_and_never_writes_the_source(tmp_path):
    src, dst = tmp_path / "train_dit", tmp_path / "variant" / "cache"
    src.mkdir()
    for name in ("a.safetensors", "b.safetensors"):
        (src / name).write_bytes(name.encode())
    (src / "notes.txt").write_text("not a cache file")
    dst.mkdir(parents=True)
    (dst / "b.safetensors").write_bytes(b"variant's own")
    assert seed_cache(src, dst) == 1
    assert (dst / "a.safetensors").read_bytes() == b"a.safetensors"
    assert (dst / "b.safetensors").read_bytes() == b"variant's own"  # existing files are kept
    assert not (dst / "notes.txt").exists()
    (dst / "c.safetensors").write_bytes(b"new")  # a variant's miss lands in its own cache only
    assert sorted(p.name for p in src.iterdir()) == ["a.safetensors", "b.safetensors", "notes.txt"]
    assert seed_cache(src, dst) == 0 and seed_cache(tmp_path / "missing", dst) == 0


def test_bad_variants_are_named():
    with pytest.raises(ConfigError, match="set mosa and/or losses"):
        _ablate(x={"lr": 1})
    with pytest.raises(ConfigError, match="hadc"):
        _ablate(x={"mosa": {"hadc": "sideways"}})
    with pytest.raises(ConfigError, match="letters, digits and underscores"):
        _ablate(**{"a-b": {}})
    with pytest.raises(ConfigError, match="empty"):
        validate_section("ablate", {"variants": {}})


def test_cli_unknown_variant_exits_2(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("train_dit: {}\nablate:\n  variants: {full: {}}\n")
    assert main(["--variant", "nope", "--params", str(params)]) == 2
    assert "unknown ablation variant 'nope'" in capsys.readouterr().err
