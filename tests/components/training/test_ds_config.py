"""The DeepSpeed templates of infra/deepspeed/ filled from an EngineConfig equal the builder's config;
a template that contradicts the engine's settings is refused with the key named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.training.config import EngineConfig
from components.training.ds_config import build_ds_config, load_ds_template

TEMPLATES = Path(__file__).resolve().parents[3] / "infra" / "deepspeed"
TEMPLATE_CASES = [
    ("zero2.json", 2, False),
    ("zero3.json", 3, False),
    ("zero2_offload.json", 2, True),
    ("zero3_offload.json", 3, True),
]


def _cfg(**kw) -> EngineConfig:
    base = dict(lr=3e-2, total_steps=40, warmup_steps=2, min_lr_ratio=0.1, micro_batch=16, grad_clip=None)
    return EngineConfig(**{**base, **kw})


@pytest.mark.parametrize(("name", "stage", "offload"), TEMPLATE_CASES)
def test_templates_hold_the_builder_settings(name, stage, offload):
    cfg = _cfg(
        zero_stage=stage, offload=offload, micro_batch=4, grad_accum=3, grad_clip=0.5, precision="fp32"
    )
    filled = load_ds_template(TEMPLATES / name, cfg)
    assert filled == build_ds_config(cfg)
    assert filled["train_micro_batch_size_per_gpu"] == 4 and filled["gradient_accumulation_steps"] == 3
    assert filled["gradient_clipping"] == 0.5 and filled["bf16"] == {"enabled": False}


def test_template_contradicting_the_config_is_refused(tmp_path):
    cfg = _cfg(zero_stage=2)
    with pytest.raises(ValueError, match=r"zero_optimization\.stage' is 3 but EngineConfig gives 2"):
        load_ds_template(TEMPLATES / "zero3.json", cfg)
    with pytest.raises(ValueError, match=r"offload_optimizer is on but EngineConfig\.offload is False"):
        load_ds_template(TEMPLATES / "zero2_offload.json", cfg)

    raw = json.loads((TEMPLATES / "zero2.json").read_text())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**raw, "optimizer": {"type": "AdamW"}}))
    with pytest.raises(ValueError, match="remove the 'optimizer' block"):
        load_ds_template(bad, cfg)
    bad.write_text(json.dumps({**raw, "fp16": {"enabled": "auto"}}))
    with pytest.raises(ValueError, match=r"'fp16\.enabled' is 'auto'"):
        load_ds_template(bad, cfg)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_ds_template(bad, cfg)
