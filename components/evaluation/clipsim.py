"""``clipsim``: CLIP similarity between the prompt and the frames (higher is better).

Per clip: the mean over frames of the cosine between CLIP's projected text embedding of the prompt and
CLIP's projected image embedding of the frame (raw cosine in [-1, 1], not ×100 and without the logit
scale — the convention behind the ~0.30 values papers report). Up to ``max_frames`` frames (option,
default all) at evenly spaced indices. The model is ``transformers.CLIPModel`` with its processor from
the local directory ``ctx.clip_path`` (loaded offline); without it the result is None with the reason.
Clips with an empty prompt are not measured.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from components.evaluation.features import check_local_model_dir
from components.evaluation.metric_registry import (
    MODEL_UNAVAILABLE,
    MetricContext,
    MetricResult,
    VideoSample,
    evenly_spaced_indices,
    register,
)

NAME = "clipsim"
BATCH = 16


class ClipScorer:
    """CLIP model + processor from a local directory; cosine between a text and images."""

    def __init__(self, path: str | Path | None, device: str = "cpu"):
        self.path = check_local_model_dir(path, "CLIPSIM (MetricContext.clip_path)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import CLIPModel, CLIPProcessor

        self.processor = CLIPProcessor.from_pretrained(str(self.path), local_files_only=True)
        self.model = CLIPModel.from_pretrained(str(self.path), local_files_only=True).to(device).eval()
        self.device = device

    @staticmethod
    def _embedding(out: Any) -> Tensor:
        emb = out if isinstance(out, Tensor) else out.pooler_output
        return torch.nn.functional.normalize(emb.float(), dim=-1)

    @torch.no_grad()
    def text_embedding(self, prompt: str) -> Tensor:
        """Unit-norm projected text embedding [D] (the prompt truncated to CLIP's context length)."""
        tok = self.processor(text=[prompt], return_tensors="pt", padding=True, truncation=True)
        tok = {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
        return self._embedding(self.model.get_text_features(**tok))[0].cpu()

    @torch.no_grad()
    def image_embeddings(self, images: np.ndarray) -> Tensor:
        """Unit-norm projected image embeddings [N,D] of uint8 RGB images [N,H,W,3]."""
        out = []
        for i in range(0, len(images), BATCH):
            px = self.processor(images=list(images[i : i + BATCH]), return_tensors="pt")["pixel_values"]
            out.append(self._embedding(self.model.get_image_features(pixel_values=px.to(self.device))).cpu())
        return torch.cat(out)

    def score(self, prompt: str, frames: np.ndarray) -> float:
        """Mean over frames of cos(text, frame)."""
        return float((self.image_embeddings(frames) @ self.text_embedding(prompt)).mean())


@register(NAME, higher_is_better=True)
def compute(samples: list[VideoSample], ctx: MetricContext) -> MetricResult:
    """Mean prompt–frame CLIP cosine per clip, averaged over clips."""
    max_frames = ctx.option(NAME, "max_frames", None)
    details = {"features": "clip", "model": str(ctx.clip_path), "max_frames_per_clip": max_frames}
    try:
        scorer = ctx.cached(("clipsim", str(ctx.clip_path)), lambda: ClipScorer(ctx.clip_path, ctx.device))
    except (*MODEL_UNAVAILABLE, ValueError) as exc:
        return MetricResult.unavailable(NAME, str(exc), True, **details)
    per_video: list[float | None] = []
    for s in samples:
        if not s.prompt.strip():
            per_video.append(None)
            continue
        idx = evenly_spaced_indices(s.num_frames, None if max_frames is None else int(max_frames))
        per_video.append(scorer.score(s.prompt, s.frames[idx]))
    return MetricResult.from_per_video(NAME, per_video, True, **details)
