"""The ablation variants' params validation and the ``ablate`` CLI."""

from __future__ import annotations

import pytest

from components.config import ConfigError, validate_section
from flows.ablate import main


def _ablate(**variants):
    return validate_section("ablate", {"steps": 7, "variants": variants})


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
