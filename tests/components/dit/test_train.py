"""MoSA objective: identity at step 0, per-term gradients reach only the trained modules, ablation
switches, determinism, and a short DeepSpeed run that lowers the loss."""

from __future__ import annotations

import functools
import re

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from components.backbone.spec import get_spec
from components.dit.config import MoSAConfig
from components.dit.data import ExampleSet, build_examples
from components.dit.mosa import MoSATransformer
from components.dit.train import (
    DiTTrainConfig,
    contact_frame_index,
    contact_term,
    decode_for_aux,
    lift_to_world,
    make_loss_fn,
    make_terms_fn,
    sample_timesteps,
    train_mosa,
)
from components.losses.config import LossWeights
from components.training.config import EngineConfig
from tests.components.dit.test_data import TINY, TokenEncoder, make_sample
from tests.components.losses.test_generated_tracker import FakeCoTracker, save_fake

torch.set_num_threads(1)
BACKBONES = ["cogvideox", "wan"]


class DepthNet(nn.Module):
    """A frozen stand-in depth network: positive depth from a conv, [N,3,H,W] → [N,1,H,W]."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 1, 3, padding=1)
        self.requires_grad_(False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return 2.0 + nn.functional.softplus(self.conv(frames))


@functools.cache
def _setup(backbone: str):
    spec = get_spec(backbone)
    base = spec.build_tiny(TINY)
    samples = [make_sample("a", 0), make_sample("b", 1, speed=3, cameras=True)]
    examples = build_examples(samples, spec, base.vae, TokenEncoder(), track_points=8)
    return spec, base, examples


@pytest.fixture(params=BACKBONES)
def setup(request):
    return _setup(request.param)


def _model(spec, base, **kw) -> MoSATransformer:
    torch.manual_seed(0)
    return MoSATransformer(base.transformer, MoSAConfig(backbone=spec.name, **kw))


def _only(term: str) -> LossWeights:
    """Weights that switch every auxiliary term off except ``term``."""
    return LossWeights(
        mask=1.0 if term == "mask" else 0.0,
        track=1.0 if term == "track" else 0.0,
        contact=1.0 if term == "contact" else 0.0,
        track_mode="temporal" if term == "track" else "off",
        contact_enabled=term == "contact",
    )


def test_at_step_zero_mosa_predicts_like_the_base(setup) -> None:
    spec, base, examples = setup
    batch = ExampleSet(examples).batch(0, 2)
    model = _model(spec, base)
    t = torch.tensor([100, 700]) if spec.objective == "v_prediction" else torch.tensor([100.0, 700.0])
    with torch.no_grad():
        x_t = spec.add_noise(base.scheduler, batch["latents"], torch.randn_like(batch["latents"]), t)
        mosa = model(None, x_t, t, batch["text_emb"], batch["structure"])["v_pred"]
        plain = spec.predict(base.transformer, x_t, t, batch["text_emb"])["v_pred"]
    assert torch.equal(mosa, plain)
    # so the whole objective equals that of the plain base (structure off), also for hadc="no_w";
    # hadc="off" (direct z + s, no HADC module) does not start as the base
    cfg = DiTTrainConfig(weights=_only("none"), decode_for_aux=False)
    loss_fn = make_loss_fn(spec, base, cfg)
    with torch.no_grad():
        ours = loss_fn(model, batch)[1]
        reference = loss_fn(_model(spec, base, structure="off"), batch)[1]
        no_w = loss_fn(_model(spec, base, hadc="no_w"), batch)[1]
        direct = loss_fn(_model(spec, base, hadc="off"), batch)[1]
    assert ours["diff"] == reference["diff"] and ours["t_mean"] == reference["t_mean"]
    assert no_w["diff"] == reference["diff"]
    assert direct["diff"] != reference["diff"] and direct["t_mean"] == reference["t_mean"]


@pytest.mark.parametrize("term", ["diff", "mask", "track", "contact"])
def test_each_term_trains_only_the_mosa_modules(setup, term: str) -> None:
    spec, base, examples = setup
    depth = DepthNet()
    model = _model(spec, base)
    cfg = DiTTrainConfig(weights=_only(term), t_range=(0.0, 0.5))
    terms = make_terms_fn(spec, base, cfg, depth_fn=depth if term == "contact" else None)
    losses, _ = terms(model, ExampleSet(examples).batch(0, 2))
    assert term in losses and float(losses[term].detach()) > 0
    losses[term].backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(n.startswith("hadc.") and ".predictor." in n for n in grads), sorted(grads)
    if term == "mask":
        assert any(".mask_head." in n for n in grads)
    frozen = [*base.transformer.parameters(), *base.vae.parameters(), *depth.parameters()]
    assert all(p.grad is None or not p.grad.any() for p in frozen)
    assert not any(p.requires_grad for p in frozen)


def test_without_hadc_the_diffusion_term_trains_the_structure_blocks(setup) -> None:
    spec, base, examples = setup
    model = _model(spec, base, hadc="off")
    cfg = DiTTrainConfig(weights=_only("mask"), decode_for_aux=False)  # mask weight on, but no mask head
    losses, _ = make_terms_fn(spec, base, cfg)(model, ExampleSet(examples).batch(0, 2))
    assert set(losses) == {"diff"}
    losses["diff"].backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all(n.startswith("structure.") for n in grads)
    assert any(n.startswith("structure.blocks.") for n in grads)
    assert all(p.grad is None for p in base.transformer.parameters())


def test_ablation_switches_choose_the_active_terms(setup) -> None:
    spec, base, examples = setup
    data = ExampleSet(examples)
    depth = DepthNet()

    def active(model=None, **kw) -> set[str]:
        cfg = DiTTrainConfig(**kw)
        with torch.no_grad():
            _, logs = make_loss_fn(spec, base, cfg, depth)(model or _model(spec, base), data.batch(0, 2))
        return {k for k in ("diff", "mask", "track", "contact") if k in logs}

    assert active() == {"diff", "mask", "track", "contact"}
    assert active(weights=LossWeights(track_mode="off")) == {"diff", "mask", "contact"}
    assert active(weights=LossWeights(contact_enabled=False)) == {"diff", "mask", "track"}
    assert active(weights=LossWeights(mask=0.0)) == {"diff", "track", "contact"}
    assert active(decode_for_aux=False) == {"diff", "mask"}
    assert active(model=_model(spec, base, hadc="no_w")) == {"diff", "track", "contact"}
    assert active(model=_model(spec, base, hadc="off")) == {"diff", "track", "contact"}
    # aux_every: the auxiliary terms on every k-th micro-step only
    loss_fn = make_loss_fn(spec, base, DiTTrainConfig(aux_every=2), depth)
    model = _model(spec, base)
    with torch.no_grad():
        flags = [loss_fn(model, data.batch(s, 2))[1]["aux"] for s in range(4)]
    assert flags == [1.0, 0.0, 1.0, 0.0]
    # aux_max_t below every drawn timestep: the terms are there but see no sample
    with torch.no_grad():
        _, logs = make_loss_fn(spec, base, DiTTrainConfig(t_range=(0.5, 1.0), aux_max_t=0.1), depth)(
            model, data.batch(0, 2)
        )
    assert logs["track"] == 0.0 and logs["contact"] == 0.0
    # aux_samples: only the least noisy kept samples are decoded; the diffusion term is untouched
    with torch.no_grad():
        full = make_loss_fn(spec, base, DiTTrainConfig(), depth)(model, data.batch(0, 2))[1]
        one = make_loss_fn(spec, base, DiTTrainConfig(aux_samples=1), depth)(model, data.batch(0, 2))[1]
    assert full["aux_decoded"] == 2.0 and one["aux_decoded"] == 1.0
    assert one["diff"] == full["diff"] and one["track"] != full["track"]
    # the weighting mode reaches the tracking loss
    with torch.no_grad():
        static = make_loss_fn(spec, base, DiTTrainConfig(weights=LossWeights(track_mode="static")), depth)
        temporal = make_loss_fn(spec, base, DiTTrainConfig(), depth)
        assert static(model, data.batch(0, 2))[1]["track"] != temporal(model, data.batch(0, 2))[1]["track"]


def test_contact_frame_index_rotates_over_every_frame() -> None:
    assert contact_frame_index(17, None, 3).tolist() == list(range(17))
    assert contact_frame_index(17, 20, 0).tolist() == list(range(17))
    first = contact_frame_index(17, 4, 0)
    assert first.tolist() == [0, 4, 8, 12]
    assert contact_frame_index(17, 4, 1).tolist() == [1, 5, 9, 13]
    # consecutive aux steps visit every frame, each pick is sorted and has no repeats
    seen: set[int] = set()
    for turn in range(5):
        idx = contact_frame_index(17, 4, turn).tolist()
        assert idx == sorted(set(idx)) and len(idx) == 4
        seen.update(idx)
    assert seen == set(range(17))
    assert contact_frame_index(17, 4, 5).tolist() == first.tolist()  # the period is ceil(17/4)
    with pytest.raises(ValueError, match="at least one frame"):
        contact_frame_index(0, 4, 0)
    with pytest.raises(ValueError, match="contact_frames must be >= 1"):
        contact_frame_index(17, 0, 0)


def test_the_contact_term_on_a_frame_subset_scores_only_those_frames(setup) -> None:
    """With ``contact_frames`` the depth net sees only the chosen frames, and the loss equals the full
    term computed on a clip cut down to those frames (the same mean over frames)."""
    _, _, examples = setup
    batch = ExampleSet(examples).batch(0, 2)
    keep = torch.tensor([True, True])
    torch.manual_seed(0)
    frames = torch.rand(2, 3, *batch["person_mask"].shape[1:]) * 2 - 1  # [B,3,T,H,W] of the clips' size
    seen: list[int] = []

    def depth_fn(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return DepthNet()(x)

    n = frames.shape[2]
    cfg = DiTTrainConfig(contact_frames=3)
    sub, _ = contact_term(frames, batch, keep, depth_fn, cfg, turn=1)
    idx = contact_frame_index(n, 3, 1)
    cut = {k: batch[k][:, idx] for k in ("K", "R", "t", "person_mask")}
    ref, _ = contact_term(frames[:, :, idx], {**batch, **cut}, keep, depth_fn, DiTTrainConfig())
    assert seen == [2 * 3, 2 * 3]
    assert torch.allclose(sub, ref)
    contact_term(frames, batch, keep, depth_fn, DiTTrainConfig())  # every frame
    assert seen[-1] == 2 * n


def test_logs_weighted_terms_and_is_deterministic_per_step(setup) -> None:
    spec, base, examples = setup
    data = ExampleSet(examples)
    cfg = DiTTrainConfig()
    loss_fn = make_loss_fn(spec, base, cfg, DepthNet())
    model = _model(spec, base)
    with torch.no_grad():
        loss, logs = loss_fn(model, data.batch(0, 2))
        again = loss_fn(model, data.batch(0, 2))[1]
        other = loss_fn(model, data.batch(1, 2))[1]
    assert logs == again and logs["t_mean"] != other["t_mean"]
    for term in ("mask", "track", "contact"):
        assert logs[f"{term}_weighted"] == pytest.approx(cfg.weights.weight(term) * logs[term])
    total = sum(logs[f"{k}_weighted"] for k in ("diff", "mask", "track", "contact"))
    assert logs["total"] == pytest.approx(total, rel=1e-5) and float(loss) == pytest.approx(total, rel=1e-5)


def test_the_tracking_term_can_use_a_cotracker3_file(tmp_path) -> None:
    spec, base, examples = _setup("cogvideox")
    batch = ExampleSet(examples).batch(0, 2)
    model = _model(spec, base)
    with pytest.raises(ValidationError, match="needs tracker_path"):
        DiTTrainConfig(tracker="cotracker3")

    def track(tracker: str = "soft", scale: float = 0.0) -> torch.Tensor:
        path = save_fake(tmp_path / f"fake{scale}.pt", FakeCoTracker(scale)) if tracker != "soft" else None
        cfg = DiTTrainConfig(weights=_only("track"), t_range=(0.0, 0.5), tracker=tracker, tracker_path=path)
        return make_terms_fn(spec, base, cfg)(model, batch)[0]["track"]

    soft, slow, fast = track(), track("cotracker3", 0.01), track("cotracker3", 0.5)
    assert len({float(soft.detach()), float(slow.detach()), float(fast.detach())}) == 3
    fast.backward()  # through the fake tracker and the decoded frames into the MoSA modules
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.hadc.parameters())
    assert all(p.grad is None for p in [*base.transformer.parameters(), *base.vae.parameters()])
    missing = tmp_path / "missing.pt"
    cfg = DiTTrainConfig(weights=_only("track"), tracker="cotracker3", tracker_path=missing)
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        make_terms_fn(spec, base, cfg)


def test_timesteps_and_lifting() -> None:
    cog, wan = get_spec("cogvideox"), get_spec("wan")
    ddim = cog.build_tiny(TINY).scheduler
    g = torch.Generator().manual_seed(0)
    t = sample_timesteps(cog, ddim, 500, (0.2, 0.4), g)
    assert t.dtype == torch.long and int(t.min()) >= 200 and int(t.max()) < 400
    flow = wan.build_tiny(TINY).scheduler
    t = sample_timesteps(wan, flow, 500, (0.0, 1.0), g)
    shift = flow.config.shift
    assert t.dtype == torch.float32 and float(t.min()) >= 0 and float(t.max()) <= 1000
    assert float((t / 1000).median()) == pytest.approx(shift * 0.5 / (1 + (shift - 1) * 0.5), abs=0.05)
    # the published Wan 2.1 scheduler keeps its shift under ``flow_shift``: the same warping applies
    from diffusers import UniPCMultistepScheduler

    unipc = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    t = sample_timesteps(wan, unipc, 500, (0.0, 1.0), g)
    assert float((t / 1000).median()) == pytest.approx(5 * 0.5 / (1 + 4 * 0.5), abs=0.05)
    # a pixel at the principal point with depth d lies d in front of the camera centre
    K = torch.tensor([[10.0, 0, 2], [0, 10.0, 1], [0, 0, 1]]).expand(1, 1, 3, 3)
    R = torch.eye(3).expand(1, 1, 3, 3)
    tr = torch.tensor([0.0, 0.0, 5.0]).expand(1, 1, 3)
    pts = lift_to_world(torch.full((1, 1, 3, 5), 2.0), K, R, tr)
    torch.testing.assert_close(pts[0, 0, 1, 2], torch.tensor([0.0, 0.0, -3.0]))
    torch.testing.assert_close(pts[0, 0, 1, 4], torch.tensor([0.4, 0.0, -3.0]))


def test_clear_errors(setup) -> None:
    spec, base, examples = setup
    with pytest.raises(ValueError, match="no depth_fn was given"):
        make_loss_fn(spec, base, DiTTrainConfig())
    make_loss_fn(spec, base, DiTTrainConfig(weights=LossWeights(contact_enabled=False)))
    with pytest.raises(ValidationError, match="t_range must satisfy"):
        DiTTrainConfig(t_range=(0.6, 0.2))
    engine = EngineConfig(lr=1e-3, total_steps=1, micro_batch=1)
    other = "wan" if spec.name == "cogvideox" else "cogvideox"
    with pytest.raises(ValueError, match=f"MoSAConfig.backbone is '{other}'"):
        train_mosa(examples, base, spec, MoSAConfig(backbone=other), DiTTrainConfig(), engine)
    with pytest.raises(ValueError, match=r"build_examples\(structure='conv'\)"):
        train_mosa(
            examples,
            base,
            spec,
            MoSAConfig(backbone=spec.name, skeleton_encoder="conv"),
            DiTTrainConfig(),
            engine,
        )
    model, result = train_mosa(
        examples, base, spec, MoSAConfig(backbone=spec.name, structure="off"), DiTTrainConfig(), engine
    )
    assert result.steps == 0 and not list(model.parameters())


def test_a_short_deepspeed_run_lowers_the_loss(tmp_path) -> None:
    spec, base, examples = _setup("cogvideox")
    depth = DepthNet()
    cfg = DiTTrainConfig(t_range=(0.0, 0.6), aux_every=3)
    engine = EngineConfig(lr=2e-2, total_steps=20, micro_batch=2, grad_clip=1.0, zero_stage=2)
    loss_fn = make_loss_fn(spec, base, cfg, depth)
    data = ExampleSet(examples)
    # steps 0 and 3 decode for the auxiliary terms, 1 and 2 do not: the mean covers both kinds
    evaluation = [data.batch(s, 2, cfg.seed) for s in range(4)]

    def mean_loss(model: nn.Module) -> float:
        with torch.no_grad():
            return sum(float(loss_fn(model, b)[0]) for b in evaluation) / len(evaluation)

    before = mean_loss(_model(spec, base))
    records = []
    model, result = train_mosa(
        examples,
        base,
        spec,
        MoSAConfig(backbone=spec.name),
        cfg,
        engine,
        ckpt_dir=tmp_path / "ckpt",
        depth_fn=depth,
        log_fn=lambda step, record: records.append(record),
        progress=False,
    )
    assert result.steps == 20 and len(records) == 20 and result.checkpoints
    assert {"diff", "diff_weighted", "mask", "total", "aux"} <= set(records[0])
    assert "track" in records[0] and "track" not in records[1]
    after = mean_loss(model)
    assert after < 0.85 * before, (before, after)
    assert any(p.abs().sum() > 0 for p in model.hadc[0].predictor.mlp[-1].parameters())


def test_aux_rows_pick_the_least_noisy_kept_samples() -> None:
    from components.dit.train import _aux_rows

    keep = torch.tensor([True, False, True, True])
    t = torch.tensor([500, 10, 300, 700])
    assert _aux_rows(keep, t, None) is None and _aux_rows(keep, t, 4) is None
    assert _aux_rows(keep, t, 2).tolist() == [2, 0]
    assert _aux_rows(keep, t, 1).tolist() == [2]
    # nothing kept: one row still decoded (its terms see no sample, as without the limit)
    assert _aux_rows(torch.zeros(4, dtype=torch.bool), t, 2).tolist() == [1]


def test_decode_for_aux_is_the_vae_decode_with_its_gradient(setup, monkeypatch) -> None:
    """The adapter's decode (batch-1 convs on the fast kernel) gives the frames and the gradient of the
    same decode with the layout switched off."""
    import contextlib
    import sys

    spec, base, examples = setup
    latents = examples[0].latents[None].float()
    weight = torch.randn(spec.vae_decode(base.vae, latents).shape, generator=torch.Generator().manual_seed(1))
    outs = []
    for layout in (False, True):
        if not layout:
            adapter = sys.modules[type(spec).__module__]
            monkeypatch.setattr(adapter, "vae_conv_layout", lambda vae: contextlib.nullcontext())
        else:
            monkeypatch.undo()
        z = latents.clone().requires_grad_(True)
        frames = decode_for_aux(spec, base.vae, z)
        (grad,) = torch.autograd.grad((frames * weight).sum(), z)
        outs.append((frames.detach(), grad))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-4, atol=1e-5)


def test_initial_weights_follow_the_seed_not_the_global_rng(setup) -> None:
    """Whatever drew from the global RNG before (loading models, cache misses) leaves the MoSA modules'
    start, and so the whole run, unchanged; another seed starts elsewhere."""
    spec, base, examples = setup
    engine = EngineConfig(lr=1e-3, total_steps=1, micro_batch=1, zero_stage=0)
    cfg = DiTTrainConfig(weights=_only("mask"))
    runs = []
    for draws, seed in ((0, 0), (1000, 0), (0, 1)):
        torch.manual_seed(123)
        torch.randn(draws)
        records: list[dict] = []
        model, _ = train_mosa(
            examples, base, spec, MoSAConfig(backbone=spec.name), cfg.model_copy(update={"seed": seed}),
            engine, log_fn=lambda step, rec, out=records: out.append(rec), progress=False,
        )  # fmt: skip
        runs.append((model.state_dict(), records[0]["mask"]))
    (a, mask_a), (b, mask_b), (c, _) = runs
    assert all(torch.equal(a[k], b[k]) for k in a) and mask_a == mask_b
    assert not all(torch.equal(a[k], c[k]) for k in a)
