"""The ablation variants: params validation and how a variant patches train_dit's params."""

from __future__ import annotations

import pytest

from components.config import ConfigError, validate_section
from components.config.schema import TrainDiTParams
from flows.ablate import main, variant_params


def _ablate(**variants):
    return validate_section("ablate", {"steps": 7, "variants": variants})


def test_variant_patches_switches_steps_and_paths_only():
    train = TrainDiTParams(mosa={"hadc": "on"}, losses={"track_mode": "temporal", "mask": 0.5}, steps=400)
    ablate = _ablate(full={}, no_w={"mosa": {"hadc": "no_w"}}, static={"losses": {"track_mode": "static"}})
    full, no_w, static = (variant_params(train, ablate, v) for v in ("full", "no_w", "static"))
    assert full.mosa == train.mosa and full.losses == train.losses
    assert no_w.mosa["hadc"] == "no_w" and no_w.losses == train.losses
    assert static.losses["track_mode"] == "static" and static.losses["mask"] == 0.5
    for p, name in ((full, "full"), (no_w, "no_w")):
        assert p.steps == 7 and p.warmup_steps == 7 and str(p.checkpoints).endswith(f"ablate/{name}")
        assert p.follow == ablate.follow and p.lr == train.lr and p.cache == train.cache
    with pytest.raises(KeyError, match="unknown ablation variant 'nope'"):
        variant_params(train, ablate, "nope")


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
