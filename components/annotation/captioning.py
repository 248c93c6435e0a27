"""Captioners and prompt extractors for annotated clips: sidecar / VLM captions, rule / LLM prompts.

Captions come from the clip's sidecar text (or, for synthetic clips, the rendered ground truth) by
default; a vision-language model from a local folder captions clips that have none when configured.
The motion-only prompt (what MoSA's structure transformer is conditioned on) is extracted from the
caption by word-list rules by default, or by a local instruction-following LLM.

The rule-based extraction is ``clause_parser``; the model adapters live here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from components.annotation.clause_parser import extract_motion_prompt
from components.annotation.pose import check_model_path


# --- adapters ----------------------------------------------------------------------------------------
def _model_dir(model_path: str | Path | None, what: str) -> Path:
    return check_model_path(model_path, what)


def _import_transformers(what: str) -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise ImportError(
            f"{what} needs the 'transformers' package, which is not installed "
            "(pip install transformers; the default 'sidecar'/'rules' settings need nothing)"
        ) from exc
    return transformers


def _clean(text: str) -> str:
    text = text.strip().splitlines()[0] if text.strip() else ""
    return re.sub(r"\s+", " ", text).strip().strip("\"'").rstrip(".!?;:, ")


class SidecarCaptioner:
    """Default captioner: captions come with the clip (sidecar text or synthetic truth); returns None."""

    def __call__(self, frames: np.ndarray) -> str | None:
        return None


class RulePromptExtractor:
    """Default motion-prompt extractor: :func:`extract_motion_prompt`."""

    def __call__(self, caption: str) -> str:
        return extract_motion_prompt(caption)


class VlmCaptioner:
    """Caption the middle frame with a local transformers vision-language model (BLIP-style captioner
    or an image-text-to-text chat model), loaded with ``local_files_only=True``."""

    def __init__(
        self,
        model_path: str | Path | None,
        *,
        prompt: str = "Describe in one sentence the person in this image and the motion they perform.",
        max_new_tokens: int = 60,
    ) -> None:
        self.model_path = _model_dir(model_path, "VLM captioner")
        tf = _import_transformers("VLM captioner")
        self.prompt, self.max_new_tokens = prompt, max_new_tokens
        self.processor = tf.AutoProcessor.from_pretrained(self.model_path, local_files_only=True)
        model_cls = getattr(tf, "AutoModelForImageTextToText", None) or tf.AutoModelForVision2Seq
        self.model = model_cls.from_pretrained(self.model_path, local_files_only=True).eval()

    def __call__(self, frames: np.ndarray) -> str:
        frame = np.ascontiguousarray(frames[len(frames) // 2])
        proc = self.processor
        if getattr(proc, "chat_template", None):
            messages = [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}
            ]
            text = proc.apply_chat_template(messages, add_generation_prompt=True)
            inputs = proc(images=frame, text=text, return_tensors="pt")
        else:
            inputs = proc(images=frame, return_tensors="pt")
        out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
        if "input_ids" in inputs and not getattr(self.model.config, "is_encoder_decoder", False):
            out = out[:, inputs["input_ids"].shape[1] :]
        return _clean(proc.batch_decode(out, skip_special_tokens=True)[0])


class LlmPromptExtractor:
    """Motion-only prompt from a local instruction-following LLM (transformers text-generation);
    falls back to the rules when the model returns nothing."""

    INSTRUCTION = (
        "Rewrite the following video caption so that it keeps only the subject and the motion: the "
        "subject as a plain noun (e.g. 'a man', 'a person'), the motion verbs, their directions and "
        "adverbs, and objects the body interacts with. Drop appearance, clothing and scene. Answer with "
        "the rewritten caption only.\nCaption: {caption}\nRewritten:"
    )

    def __init__(self, model_path: str | Path | None, *, max_new_tokens: int = 48) -> None:
        self.model_path = _model_dir(model_path, "LLM prompt extractor")
        tf = _import_transformers("LLM prompt extractor")
        self.max_new_tokens = max_new_tokens
        tok = tf.AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        model = tf.AutoModelForCausalLM.from_pretrained(self.model_path, local_files_only=True)
        self.tokenizer = tok
        self.pipe = tf.pipeline("text-generation", model=model, tokenizer=tok)

    def __call__(self, caption: str) -> str:
        prompt: Any = self.INSTRUCTION.format(caption=caption)
        if getattr(self.tokenizer, "chat_template", None):
            prompt = [{"role": "user", "content": prompt}]
        result = self.pipe(
            prompt, max_new_tokens=self.max_new_tokens, do_sample=False, return_full_text=False
        )
        generated = result[0]["generated_text"]
        if isinstance(generated, list):  # chat output: the list of messages
            generated = generated[-1].get("content", "") if generated else ""
        text = _clean(str(generated)).lower()
        return text or extract_motion_prompt(caption)


CAPTIONERS: tuple[str, ...] = ("sidecar", "vlm")
PROMPT_EXTRACTORS: tuple[str, ...] = ("rules", "llm")


def build_captioner(name: str, model_path: str | Path | None = None) -> Callable[[np.ndarray], str | None]:
    """``"sidecar"`` (captions come with the clip) or ``"vlm"`` (local model at ``model_path``)."""
    key = name.strip().lower()
    if key == "sidecar":
        return SidecarCaptioner()
    if key == "vlm":
        return VlmCaptioner(model_path)
    raise ValueError(f"unknown captioner {name!r}; known: {', '.join(CAPTIONERS)}")


def build_prompt_extractor(name: str, model_path: str | Path | None = None) -> Callable[[str], str]:
    """``"rules"`` (word lists, default) or ``"llm"`` (local model at ``model_path``)."""
    key = name.strip().lower()
    if key == "rules":
        return RulePromptExtractor()
    if key == "llm":
        return LlmPromptExtractor(model_path)
    raise ValueError(f"unknown prompt extractor {name!r}; known: {', '.join(PROMPT_EXTRACTORS)}")
