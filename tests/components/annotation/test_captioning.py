"""Captioner and prompt-extractor adapters: defaults, unknown names, model paths, missing packages."""

from __future__ import annotations

import sys

import pytest

from components.annotation.captioning import (
    CAPTIONERS,
    PROMPT_EXTRACTORS,
    LlmPromptExtractor,
    VlmCaptioner,
    build_captioner,
    build_prompt_extractor,
)
from components.annotation.clause_parser import extract_motion_prompt


def test_default_adapters() -> None:
    captioner = build_captioner("sidecar")
    assert captioner(None) is None  # captions come with the clip
    extractor = build_prompt_extractor("Rules")
    caption = "A man in a red shirt walks slowly in a park"
    assert extractor(caption) == extract_motion_prompt(caption) == "a man walks slowly"


def test_unknown_adapter_names_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="sidecar, vlm"):
        build_captioner("cogvlm")
    with pytest.raises(ValueError, match="rules, llm"):
        build_prompt_extractor("gpt")
    assert CAPTIONERS == ("sidecar", "vlm") and PROMPT_EXTRACTORS == ("rules", "llm")


@pytest.mark.parametrize(("build", "name"), [(build_captioner, "vlm"), (build_prompt_extractor, "llm")])
def test_model_adapters_need_an_existing_path(build, name: str, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="none was configured"):
        build(name, None)
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        build(name, missing)


@pytest.mark.parametrize("cls", [VlmCaptioner, LlmPromptExtractor])
def test_model_adapters_name_the_missing_transformers_package(cls, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails even where it is installed
    with pytest.raises(ImportError, match="'transformers'"):
        cls(tmp_path)
