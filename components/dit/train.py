"""Training the MoSA modules (structure blocks + HADC) on cached clip tensors with MoSA's loss (Eq. 9).

``make_loss_fn`` builds the per-micro-batch objective for the ``Trainer`` (``components.training``):

1. timesteps and noise are drawn from a generator seeded by ``(seed, step)``, so a micro-step's
   randomness depends on its index only (exact resume, identical reruns); timesteps are uniform over
   ``t_range`` (a share of the training timesteps). For flow matching (Wan) the uniform draw ``u`` is
   mapped through the scheduler's shift, ``σ = s·u / (1 + (s−1)·u)``, as Wan's sampler spaces its
   steps, and ``t = σ·num_train_timesteps``;
2. ``x_t = spec.add_noise(x₀, ε, t)`` and the MoSA forward (the frozen base lives in the closure and
   in the model, never among the trained parameters);
3. ``L_diff``: CogVideoX's v-prediction loss (``losses.diffusion``, weight ``1/(1−ᾱ_t)`` on the x̂₀
   error) or, for flow matching, the MSE to ``spec.velocity_target`` (with ``x̂₀ = x_t − σ·v̂``);
4. ``L_mask``: the mean over HADC modules of ``mask_loss(m̂_i, E(mask))`` (clips without a mask weigh 0);
5. auxiliary terms, when ``decode_for_aux`` is on, on every ``aux_every``-th micro-step: x̂₀ is decoded
   once, through the frozen VAE with gradients (the VAE's parameters stay frozen), and both terms read
   the same frames (``decode_for_aux``; on CPU the batch-1 decode's 3D convolutions run on oneDNN, see
   ``components.backbone.conv3d_layout``). ``L_track``: the
   ground-truth query points are tracked on the decoded frames by ``tracker``
   (``losses.generated_tracker``, built once): ``"soft"`` soft-tracks them with the search windows
   centred on the ground-truth tracks (``losses.soft_tracker``), so the tracker measures how far the
   generated content sits from where it should be; ``"cotracker3"`` runs a frozen CoTracker3
   TorchScript file (``tracker_path``) with gradients to the frames. The tracks are compared
   pairwise with the ground truth (``losses.tracking``).
   ``L_contact``: ``depth_fn`` (frozen) gives depth per decoded frame, lifted to world points with
   the clip's cameras (``data.py``) and scored by ``losses.contact`` with the ground-truth person mask;
  ``contact_frames = f`` scores f evenly spaced frames per aux step, the offset rotating from one aux
  step to the next (``contact_frame_index``): the same mean over frames, estimated at f/T of the depth
  network's cost.
   ``aux_every = k`` saves the two decodes' CPU time on the other steps; the terms are not rescaled,
   so on average they act with ``λ/k`` (raise λ by ``k`` to keep the paper's balance).
   ``aux_max_t`` leaves out samples noisier than that share of the timesteps (x̂₀ is a blur there);
   ``aux_samples = m`` decodes only the ``m`` least noisy kept samples of the batch (the others add
   nothing to these terms on that step);
6. ``combine`` (Eq. 9) gives the total and logs each term unweighted and weighted.

``train_mosa`` wires this to the DeepSpeed ``Trainer`` and returns the trained ``MoSATransformer``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from components.backbone.spec import BackboneSpec, BaseModels, flow_shift
from components.base.depth import to_world, unproject
from components.dit.config import MoSAConfig
from components.dit.data import DiTExample, ExampleSet
from components.dit.mosa import MoSATransformer
from components.losses.config import LossWeights
from components.losses.contact import contact_loss
from components.losses.diffusion import v_prediction_loss
from components.losses.generated_tracker import GeneratedTracker, build_generated_tracker
from components.losses.mask import mask_loss
from components.losses.total import combine
from components.losses.tracking import tracking_loss
from components.training.config import EngineConfig
from components.training.engine import LogFn, Trainer, TrainResult

log = logging.getLogger(__name__)

DepthFn = Callable[[Tensor], Tensor]
LossFn = Callable[[nn.Module, Mapping[str, Any]], tuple[Tensor, dict[str, float]]]


class DiTTrainConfig(BaseModel):
    """What the MoSA objective computes and how (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: LossWeights = Field(default_factory=LossWeights)
    t_range: tuple[float, float] = Field(
        (0.0, 1.0), description="timesteps drawn uniformly from this share of the training timesteps"
    )
    decode_for_aux: bool = Field(True, description="decode x̂₀ for the tracking and contact losses")
    aux_every: int = Field(1, ge=1, description="compute tracking/contact on every k-th micro-step")
    aux_max_t: float = Field(1.0, gt=0, le=1, description="aux terms only for t below this share")
    aux_samples: int | None = Field(
        None, ge=1, description="decode at most this many kept samples per aux step (least noisy first)"
    )
    track_points: int = Field(64, ge=1, description="person tracks per clip through the tracker")
    track_radius: int = Field(4, ge=0, description="soft tracker search half-width, pixels")
    track_patch: int = Field(3, ge=1, description="soft tracker patch half-width, pixels")
    track_temperature: float = Field(0.05, gt=0)
    tracker: Literal["soft", "cotracker3"] = Field(
        "soft", description="tracker of the generated video: soft (ours) | cotracker3 (tracker_path)"
    )
    tracker_path: Path | None = Field(None, description="CoTracker3 TorchScript file (tracker cotracker3)")
    contact_tau: float = Field(0.0, ge=0)
    contact_attract: float = Field(0.01, ge=0, description="pull of human points toward the surface")
    contact_max_scene_points: int = Field(20000, ge=4)
    contact_per_object: bool = False
    contact_frames: int | None = Field(
        None,
        ge=1,
        description="frames of a decoded clip the contact term scores per aux step (evenly spaced, the "
        "offset rotating from one aux step to the next); None: every frame",
    )
    short_caption_prob: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of items trained under a short caption variant "
        "(components/data/caption_variants.py)",
    )
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _range(self) -> DiTTrainConfig:
        lo, hi = self.t_range
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"t_range must satisfy 0 <= low < high <= 1, got {self.t_range}")
        if self.tracker == "cotracker3" and self.tracker_path is None:
            raise ValueError(
                "tracker 'cotracker3' needs tracker_path (a CoTracker3 TorchScript file): set "
                "train_dit.tracker_path, or use tracker: soft"
            )
        return self

    @property
    def track_active(self) -> bool:
        return self.decode_for_aux and self.weights.weight("track") > 0

    @property
    def contact_active(self) -> bool:
        return self.decode_for_aux and self.weights.weight("contact") > 0


# ---------------------------------------------------------------- pieces


def sample_timesteps(
    spec: BackboneSpec, scheduler: Any, batch: int, t_range: tuple[float, float], generator: torch.Generator
) -> Tensor:
    """Training timesteps ``[B]``: integer indices (v-prediction) or ``σ·N`` floats (flow matching)."""
    n = int(scheduler.config.num_train_timesteps)
    lo, hi = t_range
    u = lo + (hi - lo) * torch.rand(batch, generator=generator, dtype=torch.float64)
    if spec.objective == "v_prediction":
        return (u * n).floor().clamp(0, n - 1).long()
    shift = flow_shift(scheduler)
    sigma = shift * u / (1 + (shift - 1) * u)
    return (sigma * n).float()


def flow_sigma(scheduler: Any, timesteps: Tensor, like: Tensor) -> Tensor:
    """``σ = t / N`` shaped to broadcast against ``like``."""
    n = float(scheduler.config.num_train_timesteps)
    return (timesteps.to(like.device, torch.float32) / n).reshape(-1, *([1] * (like.ndim - 1)))


def lift_to_world(depth: Tensor, K: Tensor, R: Tensor, t: Tensor) -> Tensor:
    """Depth ``[B,T,H,W]`` (camera z) → world points ``[B,T,H,W,3]`` (``unproject``, then ``to_world``).

    ``K``, ``R`` are ``[B,T,3,3]`` and ``t`` ``[B,T,3]`` (world → camera, as the synthetic renderer
    stores them). Differentiable in ``depth``.
    """
    b, n, h, w = depth.shape
    cam = unproject(depth.reshape(b * n, h, w), K.reshape(b * n, 3, 3))
    return to_world(cam, R.reshape(b * n, 3, 3), t.reshape(b * n, 3)).reshape(b, n, h, w, 3)


def _even_subset(n: int, k: int) -> Tensor:
    """Indices of ``min(n, k)`` evenly spaced items out of ``n``."""
    if n <= k:
        return torch.arange(n)
    return torch.linspace(0, n - 1, k).round().long().unique()


def make_tracker(cfg: DiTTrainConfig) -> GeneratedTracker:
    """The generated-video tracker of ``cfg`` (``tracker``, ``tracker_path``, ``track_*``)."""
    return build_generated_tracker(
        cfg.tracker, cfg.tracker_path, cfg.track_radius, cfg.track_patch, cfg.track_temperature
    )


def track_term(
    frames: Tensor,
    batch: Mapping[str, Any],
    keep: Tensor,
    cfg: DiTTrainConfig,
    tracker: GeneratedTracker | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """``L_track`` on decoded frames ``[B,3,T,H,W]`` for the samples flagged in ``keep`` ``[B]``
    (``tracker`` defaults to ``make_tracker(cfg)``)."""
    tracker = tracker if tracker is not None else make_tracker(cfg)
    _, _, _, h, w = frames.shape
    idx = _even_subset(batch["tracks"].shape[2], cfg.track_points).to(frames.device)
    scale = torch.tensor([max(w - 1, 1), max(h - 1, 1)], device=frames.device, dtype=frames.dtype)
    gt = batch["tracks"][:, :, idx].to(frames.dtype) * scale  # [B,T,N,2] pixels
    vis = batch["track_visible"][:, :, idx].bool() & (keep & batch["has_points"].bool())[:, None, None]
    qt = batch["query_t"].long()
    rows = torch.arange(gt.shape[0], device=gt.device)
    pred = tracker(frames.permute(0, 2, 1, 3, 4), gt[rows, qt], qt, gt)
    loss = tracking_loss(pred, gt, vis, mode=cfg.weights.track_mode, frame_size=(h, w))
    return loss, {"track_points": float(vis.any(dim=1).sum())}


def contact_frame_index(total: int, count: int | None, turn: int) -> Tensor:
    """Frames the contact term scores on aux step number ``turn``: ``count`` of ``total`` evenly spaced,
    shifted by ``turn`` so that consecutive aux steps visit every frame (all of them for ``None``).

    L_contact is a mean over frames, so scoring a rotating subset is an unbiased estimate of it that
    costs ``count/total`` of the depth network; the scene hull is then built from those frames' scene
    points only (a subset's hull lies inside the full one: penetration can only be under-reported).
    """
    if total < 1:
        raise ValueError(f"a clip needs at least one frame, got {total}")
    if count is None or count >= total:
        return torch.arange(total)
    if count < 1:
        raise ValueError(f"contact_frames must be >= 1 or None, got {count}")
    period = -(-total // count)  # shifts 0..period-1 cover every frame
    return torch.sort((torch.arange(count) * total // count + turn % period) % total).values


def contact_term(
    frames: Tensor,
    batch: Mapping[str, Any],
    keep: Tensor,
    depth_fn: DepthFn,
    cfg: DiTTrainConfig,
    turn: int = 0,
) -> tuple[Tensor, dict[str, float]]:
    """``L_contact`` of decoded frames ``[B,3,T,H,W]`` through ``depth_fn`` for the samples in ``keep``, on
    the frames ``contact_frame_index(T, cfg.contact_frames, turn)``."""
    sel = keep.nonzero().flatten()
    if sel.numel() == 0:
        return frames.sum() * 0.0, {}
    fidx = contact_frame_index(frames.shape[2], cfg.contact_frames, turn).to(frames.device)
    x = frames[sel][:, :, fidx].clamp(-1, 1).permute(0, 2, 1, 3, 4)  # [b,T',3,H,W]
    b, t, _, h, w = x.shape
    depth = depth_fn(x.reshape(b * t, 3, h, w))
    if depth.shape != (b * t, 1, h, w):
        raise ValueError(f"depth_fn must map [N,3,H,W] frames to [N,1,H,W] depth, got {tuple(depth.shape)}")
    points = lift_to_world(
        depth.reshape(b, t, h, w).float(),
        batch["K"][sel][:, fidx],
        batch["R"][sel][:, fidx],
        batch["t"][sel][:, fidx],
    )
    out = contact_loss(
        points,
        batch["person_mask"][sel][:, fidx].bool(),
        tau=cfg.contact_tau,
        attract_weight=cfg.contact_attract,
        max_scene_points=cfg.contact_max_scene_points,
        per_object=cfg.contact_per_object,
    )
    return out.loss, {
        "contact_degenerate": float(out.degenerate.float().mean()),
        "contact_penetrating": float(out.penetrating.float().mean()),
    }


# ---------------------------------------------------------------- the decode for the auxiliary terms


def decode_for_aux(spec: BackboneSpec, vae: nn.Module, x0_hat: Tensor) -> Tensor:
    """x̂₀ latents ``[B,F',C,h,w]`` → frames ``[B,3,F,H,W]`` float through the frozen VAE, with gradients
    to x̂₀ (``spec.vae_decode``, whose batch-1 3D convolutions run on oneDNN on CPU: ``Conv3dLayout``)."""
    return spec.vae_decode(vae, x0_hat.to(vae.dtype)).float()


# ---------------------------------------------------------------- the objective


def _aux_rows(keep: Tensor, t: Tensor, limit: int | None) -> Tensor | None:
    """Rows to decode for the auxiliary terms: every row (``None``) without a limit, else at most
    ``limit`` kept rows, least noisy first (at least one row, so the terms keep their graph)."""
    if limit is None or limit >= keep.shape[0]:
        return None
    order = torch.argsort(t.float() + (~keep).float() * (t.float().max() + 1), stable=True)
    return order[: max(1, min(limit, int(keep.sum()) or 1))]


def _take_rows(value: Any, rows: Tensor, batch_size: int) -> Any:
    """``value[rows]`` for per-sample tensors (leading dimension ``batch_size``); others unchanged."""
    if torch.is_tensor(value) and value.ndim > 0 and value.shape[0] == batch_size:
        return value[rows.to(value.device)]
    return value


TermsFn = Callable[[nn.Module, Mapping[str, Any]], tuple[dict[str, Tensor], dict[str, float]]]


def make_terms_fn(
    spec: BackboneSpec,
    base_models: BaseModels,
    cfg: DiTTrainConfig,
    depth_fn: DepthFn | None = None,
    scheduler: Any = None,
) -> TermsFn:
    """``terms(engine, batch) -> (losses, logs)``: the unweighted terms of Eq. 9 that are active.

    ``losses`` maps ``diff``/``mask``/``track``/``contact`` to scalars (a term is absent when it is
    switched off or skipped on this step); ``make_loss_fn`` combines them.
    """
    scheduler = scheduler if scheduler is not None else base_models.scheduler
    base, vae = base_models.transformer, base_models.vae
    vae.requires_grad_(False).eval()
    if cfg.contact_active and depth_fn is None:
        raise ValueError(
            "the contact loss is on (weights.contact > 0, contact_enabled, decode_for_aux) but no depth_fn "
            "was given: pass the frozen depth network, or set weights.contact_enabled: false"
        )
    tracker = make_tracker(cfg) if cfg.track_active else None
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if spec.objective == "v_prediction" and alphas is None:
        raise ValueError(
            f"{type(scheduler).__name__} has no alphas_cumprod; v-prediction needs a DDPM-style scheduler"
        )

    def terms(engine: nn.Module, batch: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, float]]:
        step = int(batch["step"])
        dtype = next(base.parameters()).dtype
        x0 = batch["latents"].float()
        device = x0.device
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        t = sample_timesteps(spec, scheduler, x0.shape[0], cfg.t_range, gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        x_t = spec.add_noise(scheduler, x0, noise, t)
        hadc_on = getattr(engine, "module", engine).config.hadc == "on"  # only "on" has mask heads
        out = engine(
            None,
            x_t.to(dtype),
            t,
            batch["text_emb"].to(dtype),
            batch["structure"].to(dtype),
            compute_masks=hadc_on and cfg.weights.mask > 0,
        )
        v_pred = out["v_pred"].float()
        if spec.objective == "v_prediction":
            l_diff, x0_hat = v_prediction_loss(v_pred, x0, noise, t, alphas)
        else:
            target = spec.velocity_target(scheduler, x0, noise, t).float()
            l_diff = F.mse_loss(v_pred, target)
            x0_hat = x_t.float() - flow_sigma(scheduler, t, x_t) * v_pred
        losses = {"diff": l_diff}
        logs: dict[str, float] = {"t_mean": float(t.float().mean())}
        if out["mask_latents"]:
            weight = batch["has_mask"].float()
            target_mask = batch["mask_latents"].float()
            losses["mask"] = torch.stack(
                [mask_loss(m.float(), target_mask, weight) for m in out["mask_latents"]]
            ).mean()
        aux = (cfg.track_active or cfg.contact_active) and step % cfg.aux_every == 0
        logs["aux"] = float(aux)
        if aux:
            n = float(scheduler.config.num_train_timesteps)
            keep = t.float() <= cfg.aux_max_t * n
            rows, sub = _aux_rows(keep, t, cfg.aux_samples), batch
            if rows is not None:  # decode only the chosen samples: the VAE decode dominates CPU time
                x0_hat, keep = x0_hat[rows], keep[rows]
                sub = {k: _take_rows(v, rows, t.shape[0]) for k, v in batch.items()}
            logs["aux_decoded"] = float(x0_hat.shape[0])
            frames = decode_for_aux(spec, vae, x0_hat)  # one decode serves both terms
            if cfg.track_active:
                losses["track"], extra = track_term(frames, sub, keep, cfg, tracker)
                logs.update(extra)
            if cfg.contact_active:
                turn = step // cfg.aux_every
                losses["contact"], extra = contact_term(frames, sub, keep, depth_fn, cfg, turn)
                logs.update(extra)
        return losses, logs

    return terms


def make_loss_fn(
    spec: BackboneSpec,
    base_models: BaseModels,
    cfg: DiTTrainConfig,
    depth_fn: DepthFn | None = None,
    scheduler: Any = None,
) -> LossFn:
    """``loss_fn(engine, batch) -> (loss, logs)`` for ``Trainer`` (see the module docstring).

    ``engine`` is the MoSA model (or the DeepSpeed engine around it); ``batch`` an ``ExampleSet``
    batch. ``scheduler`` defaults to the base's. The VAE and ``depth_fn`` are used frozen. ``logs``
    hold every active term unweighted (``<term>``) and weighted (``<term>_weighted``), ``total``,
    the mean timestep ``t_mean`` and ``aux`` (1 when the auxiliary terms were computed).
    """
    terms = make_terms_fn(spec, base_models, cfg, depth_fn, scheduler)

    def loss_fn(engine: nn.Module, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        losses, logs = terms(engine, batch)
        total, term_logs = combine(losses, cfg.weights)
        return total, {**logs, **term_logs}

    return loss_fn


# ---------------------------------------------------------------- the stage's entry point


def train_mosa(
    examples: Sequence[DiTExample],
    base_models: BaseModels,
    spec: BackboneSpec,
    mosa_cfg: MoSAConfig,
    train_cfg: DiTTrainConfig,
    engine_cfg: EngineConfig,
    ckpt_dir: Path | str | None = None,
    depth_fn: DepthFn | None = None,
    log_fn: LogFn | None = None,
    progress: bool = True,
) -> tuple[MoSATransformer, TrainResult]:
    """Build the MoSA model around the frozen base, train it on ``examples``, return it with the result.

    With ``structure="off"`` nothing trains: the model is the base and the result has 0 steps.
    ``hadc="off"`` still trains the structure blocks (their features are added directly, ``z + s``);
    ``hadc="no_w"``/``"off"`` have no mask head, so no mask loss. Checkpoints in ``ckpt_dir`` make the
    run resumable.
    """
    if mosa_cfg.backbone != spec.name:
        raise ValueError(f"MoSAConfig.backbone is {mosa_cfg.backbone!r} but the spec is {spec.name!r}")
    data = ExampleSet(examples, train_cfg.short_caption_prob)
    kinds = {e.structure_kind for e in data.examples}
    if mosa_cfg.branch_active and kinds != {mosa_cfg.skeleton_encoder}:
        raise ValueError(
            f"examples hold {sorted(kinds)} structure inputs but MoSAConfig.skeleton_encoder is "
            f"{mosa_cfg.skeleton_encoder!r}: rebuild them with build_examples(structure="
            f"{mosa_cfg.skeleton_encoder!r})"
        )
    # the MoSA modules' initial weights follow from train_cfg.seed alone, not from whatever drew from the
    # global RNG before (model loading, a cache hit or miss): a rerun starts from the same weights
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_cfg.seed)
        model = MoSATransformer(
            base_models.transformer, mosa_cfg, spec.vae_spatial_compression(base_models.vae)
        )
    if not mosa_cfg.branch_active:
        log.warning("structure=%s: nothing to train, the model is the base", mosa_cfg.structure)
        return model, TrainResult(0, [], None, 0.0, engine_cfg.zero_stage, 1)
    loss_fn = make_loss_fn(spec, base_models, train_cfg, depth_fn)
    trainer = Trainer(model, engine_cfg, loss_fn, ckpt_dir=ckpt_dir, log_fn=log_fn)
    rank, world = trainer.rank, trainer.world_size

    def batches(micro_step: int) -> dict[str, Any]:
        return data.batch(micro_step * world + rank, engine_cfg.micro_batch, train_cfg.seed)

    result = trainer.fit(batches, progress=progress)
    model.load_state_dict(trainer.full_state_dict())
    return model.eval(), result
