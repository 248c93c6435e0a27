"""clipsim: the real transformers code path on a tiny randomly initialised CLIP saved to a local folder,
and None with a reason without one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from components.evaluation.clipsim import NAME, ClipScorer
from components.evaluation.metric_registry import MetricContext, VideoSample, compute_metrics


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A 2-layer CLIP (random weights) with a character-level tokenizer and a 32-px image processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    d = tmp_path_factory.mktemp("clip")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    cfg = CLIPConfig(
        text_config={
            **small,
            "vocab_size": len(vocab),
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(d)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 40, 48, 3), dtype=np.uint8)


def test_clipsim_is_the_mean_prompt_frame_cosine(clip_dir, frames):
    from transformers import CLIPModel, CLIPProcessor

    ctx = MetricContext(clip_path=clip_dir)
    r = compute_metrics([NAME], [VideoSample(frames, 8.0, "a man runs")], ctx)[NAME]
    # independent computation with the checkpoint's own processor and model
    proc = CLIPProcessor.from_pretrained(str(clip_dir))
    model = CLIPModel.from_pretrained(str(clip_dir)).eval()
    with torch.no_grad():
        t = model.get_text_features(**proc(text=["a man runs"], return_tensors="pt")).pooler_output[0]
        i = model.get_image_features(**proc(images=list(frames), return_tensors="pt")).pooler_output
    expected = torch.nn.functional.cosine_similarity(i, t[None], dim=-1).mean().item()
    assert r.value == pytest.approx(expected, abs=1e-5)
    assert -1.0 <= r.value <= 1.0 and r.higher_is_better and r.details["features"] == "clip"


def test_per_video_values_depend_on_prompt_and_frames(clip_dir, frames):
    ctx = MetricContext(clip_path=clip_dir)
    samples = [
        VideoSample(frames, 8.0, "a man runs"),
        VideoSample(frames, 8.0, "zebra jumps over fence"),
        VideoSample(frames[::-1].copy(), 8.0, "a man runs"),  # same frames, other order: same mean
        VideoSample(frames, 8.0, "   "),
    ]
    r = compute_metrics([NAME], samples, ctx)[NAME]
    a, b, c, d = r.per_video
    assert a != pytest.approx(b, abs=1e-6)
    assert c == pytest.approx(a, abs=1e-5)
    assert d is None and r.details["measured"] == 3
    assert r.value == pytest.approx((a + b + c) / 3)


def test_frame_subsampling_option(clip_dir, frames):
    ctx = MetricContext(clip_path=clip_dir, options={NAME: {"max_frames": 2}})
    scorer = ClipScorer(clip_dir)
    r = compute_metrics([NAME], [VideoSample(frames, 8.0, "a man runs")], ctx)[NAME]
    assert r.value == pytest.approx(scorer.score("a man runs", frames[[0, 4]]), abs=1e-5)


def test_none_with_reason_without_a_model(tmp_path, frames):
    s = [VideoSample(frames, 8.0, "a man runs")]
    r = compute_metrics([NAME], s, MetricContext())[NAME]
    assert r.value is None and "clip_path" in r.reason and "none was configured" in r.reason
    r = compute_metrics([NAME], s, MetricContext(clip_path=tmp_path / "missing"))[NAME]
    assert r.value is None and "not found" in r.reason
    empty = tmp_path / "empty"
    empty.mkdir()
    r = compute_metrics([NAME], s, MetricContext(clip_path=empty))[NAME]
    assert r.value is None and r.reason
