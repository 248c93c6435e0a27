"""The ``pretrain_motion`` stage's work: split, train the VQ-VAE and the generator through the DeepSpeed
engine, train the evaluator, measure text-to-motion metrics on the held-out split, save the model.

Every figure is "our evaluator on our data": a small Guo et al.-style contrastive evaluator trained on
the training split here, never comparable with published HumanML3D tables.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.motion.config import PretrainMotionParams
from components.motion.dataset import MotionDataset, resolve_motion_root, split_by_group
from components.motion.evaluator import MotionTextEvaluator, train_evaluator
from components.motion.generator import MotionGenerator
from components.motion.humanml3d import features_to_joints
from components.motion.physics import floor_penetration, foot_skate_ratio, mpjpe_mm
from components.motion.render import draw_stick_3d
from components.motion.structure import StructureModel
from components.motion.t2m_metrics import fid, t2m_report
from components.motion.text_encoder import TextEncoder, build_text_encoder
from components.motion.variants import expand_motion_set
from components.motion.vqvae import MotionVQVAE
from components.training.config import EngineConfig, TrainPhaseParams
from components.training.engine import Trainer

log = logging.getLogger(__name__)


@dataclass
class PhaseResult:
    """What one training phase reports (curves go to plots/, the rest to metrics)."""

    name: str
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int | None = None
    zero_stage: int = 0
    world_size: int = 1


def held_out_split(root: Path, index: list[dict[str, str]], test_fraction: float, seed: int):
    """(train_ids, test_ids, how). Whole groups (a source clip and its mirror) stay on one side.

    When the motion set records an ``action`` per motion (the ingest stage's motion set does), test
    groups are drawn only among actions performed by at least two source clips, one group per action,
    so that held-out prompts describe actions the model saw performed by *other* clips; actions with a
    single clip would otherwise be unseen and unlearnable. Without action labels (HumanML3D), plain
    group split (``split_by_group``).
    """
    index_file = Path(root) / "index.jsonl"
    actions: dict[str, str] = {}
    if index_file.is_file():
        for line in index_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("action"):
                    actions[str(row.get("group") or row["id"])] = str(row["action"]).replace("~mirror", "")
    groups = sorted({x["group"] for x in index})
    if not actions or test_fraction == 0:
        tr, te = split_by_group(index, test_fraction, seed)
        return tr, te, "group"
    by_action: dict[str, list[str]] = {}
    for g in groups:
        by_action.setdefault(actions.get(g, g), []).append(g)
    rng = np.random.default_rng(seed)
    n_test = max(1, math.floor(test_fraction * len(groups) + 0.5))
    test_groups: list[str] = []
    for action in sorted(by_action):
        members = by_action[action]
        if len(members) >= 2 and len(test_groups) < n_test:
            test_groups.append(members[int(rng.integers(len(members)))])
    if not test_groups:
        tr, te = split_by_group(index, test_fraction, seed)
        return tr, te, "group"
    test = [x["id"] for x in index if x["group"] in set(test_groups)]
    train = [x["id"] for x in index if x["group"] not in set(test_groups)]
    return train, test, "group, stratified by action"


def _train(
    name: str,
    model: torch.nn.Module,
    phase: TrainPhaseParams,
    seed: int,
    loss_fn: Callable,
    batches: Callable[[int], Any],
    ckpt_dir: Path,
    on_log: Callable[[str, int, dict[str, float]], None] | None,
    progress: bool,
) -> tuple[torch.nn.Module, PhaseResult]:

    result = PhaseResult(name)

    def log_fn(step: int, logs: dict[str, float]) -> None:
        result.history.append({"step": step, **logs})
        if on_log is not None:
            on_log(name, step, logs)

    trainer = Trainer(model, EngineConfig.for_phase(phase, seed), loss_fn, ckpt_dir, log_fn=log_fn)
    out = trainer.fit(batches, phase.steps, progress=progress)
    # the whole curve: a run resumed from a checkpoint gets the earlier steps from the checkpoint
    result.history = [dict(r) for r in out.losses] or result.history
    result.seconds, result.resumed_from = out.seconds, out.resumed_from
    result.zero_stage, result.world_size = out.zero_stage, out.world_size
    trained = trainer.engine.module
    trained.eval()
    return trained, result


def _embed_texts(encoder: TextEncoder, texts: list[str]) -> torch.Tensor:
    return encoder.encode(list(texts)).float()


EVALUATOR_SPREAD_KEYS = (
    "r_precision_top1", "r_precision_top3", "fid", "gt_r_precision_top3", "gt_fid", "gt_other_clips_fid",
)  # fmt: skip


def combine_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from one per evaluator: numbers are averaged, ``<key>_evaluator_sd`` gives the
    spread of the main ones across evaluators, anything else (text, None) comes from the first."""
    if not reports:
        raise ValueError("combine_reports needs at least one report")
    out: dict[str, Any] = {}
    for key, first in reports[0].items():
        values = [r.get(key) for r in reports]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        out[key] = float(np.mean(values)) if numeric else first
        if numeric and key in EVALUATOR_SPREAD_KEYS:
            out[f"{key}_evaluator_sd"] = float(np.std(values))
    out["evaluators"] = len(reports)
    return out


@torch.no_grad()
def evaluate(
    model: StructureModel,
    evaluators: MotionTextEvaluator | list[MotionTextEvaluator],
    test: MotionDataset,
    params: PretrainMotionParams,
    progress: bool = False,
    other_clips: MotionDataset | None = None,
) -> dict[str, Any]:
    """Held-out text-to-motion metrics, the GT reference row, VQ-VAE reconstruction and physics.

    The motions are generated once; each evaluator embeds them and the reports are averaged
    (``combine_reports``). ``other_clips`` (the training split) gives a second real-vs-real FID
    reference, ``gt_other_clips_fid``: the held-out windows against the real training windows that
    the same texts describe (equal meanings; all training motions when there are no meanings), i.e.
    what FID real motions score when they come from other source clips, as a generator's must."""
    from tqdm import tqdm

    if isinstance(evaluators, MotionTextEvaluator):
        evaluators = [evaluators]
    ev = params.evaluation
    win = test.held_out_windows(test.ids, window=ev.window, stride=ev.stride)
    feats, lengths, texts = win["features"], win["lengths"], win["texts"]
    stats = test.stats
    raw_gt = torch.from_numpy(stats.denormalize(feats.numpy().astype(np.float64)).astype(np.float32))
    sentence = _embed_texts(model.text_encoder, texts)
    recon = model.vqvae(feats, lengths)["recon"].double().numpy()  # the tokenizer's round trip
    raw_recon = torch.from_numpy(stats.denormalize(recon).astype(np.float32))

    # generated: one motion per held-out window text, each replication with fresh seeds
    reps = ev.replications
    gen_raw = torch.zeros((reps, *raw_gt.shape))
    gen_joints: list[np.ndarray] = []
    ntok = [int(n) // model.frames_per_token for n in lengths]
    jobs = [(r, i) for r in range(reps) for i in range(len(texts))]
    codes_all = model.sample_tokens_batch(
        [texts[i] for _, i in jobs], [ntok[i] * model.frames_per_token for _, i in jobs],
        [params.seed + 1000 * r + i for r, i in jobs],
        guidance=ev.guidance, top_k=ev.top_k, temperature=ev.temperature,
    )  # fmt: skip
    bar = tqdm(total=len(jobs), desc="evaluate: decode", unit="motion", disable=not progress)
    for (r, i), codes in zip(jobs, codes_all, strict=True):
        f = model.vqvae.decode(codes.reshape(1, -1))[0].double().numpy()
        raw = stats.denormalize(f).astype(np.float32)
        m = min(len(raw), gen_raw.shape[2])
        gen_raw[r, i, :m] = torch.from_numpy(raw[:m])
        if r == 0:
            gen_joints.append(np.asarray(features_to_joints(raw.astype(np.float64))))
        bar.update()
    bar.close()

    # MultiModality: several generations for each of a few prompts
    prompts = list(dict.fromkeys(texts))[: ev.mm_prompts]
    n_mm = int(lengths.max()) // model.frames_per_token
    mm_raw = torch.zeros((len(prompts), ev.mm_samples, n_mm * model.frames_per_token, raw_gt.shape[-1]))
    mm_jobs = [(p, k) for p in range(len(prompts)) for k in range(ev.mm_samples)]
    mm_codes = model.sample_tokens_batch(
        [prompts[p] for p, _ in mm_jobs], [n_mm * model.frames_per_token] * len(mm_jobs),
        [params.seed + 7919 * (k + 1) + p for p, k in mm_jobs],
        guidance=ev.guidance, top_k=ev.top_k, temperature=ev.temperature,
    )  # fmt: skip
    for (p, k), codes in zip(mm_jobs, mm_codes, strict=True):
        f = stats.denormalize(model.vqvae.decode(codes.reshape(1, -1))[0].double().numpy())
        mm_raw[p, k, : len(f)] = torch.from_numpy(f.astype(np.float32))[: mm_raw.shape[2]]
    mm_lengths = torch.full((ev.mm_samples,), mm_raw.shape[2])

    # R-precision batches of distinct motions (Guo et al.) when there are enough motions
    if len(set(win["ids"])) >= 32:
        groups, batching = np.asarray(win["ids"]), "distinct motions"
    else:
        groups, batching = None, "random windows (fewer than 32 held-out motions: texts repeat)"
    other = _other_clip_windows(other_clips, test, ev.window, ev.stride) if other_clips is not None else None
    reports = []
    for evaluator in evaluators:
        gen_emb = np.stack([evaluator.embed_motion(gen_raw[r], lengths).numpy() for r in range(reps)])
        mm = np.stack([evaluator.embed_motion(rows, mm_lengths).numpy() for rows in mm_raw])
        text_emb = evaluator.embed_text(sentence).numpy()
        gt_emb = evaluator.embed_motion(raw_gt, lengths).numpy()
        report = t2m_report(
            text_emb, gt_emb, gen_emb, mm_emb=mm if len(prompts) >= 1 else None,
            replications=reps, seed=params.seed, groups=groups,
        )  # fmt: skip
        # the FID the tokenizer alone costs: decoded(encoded(GT)) against GT
        report["recon_fid"] = fid(gt_emb, evaluator.embed_motion(raw_recon, lengths).numpy())
        if other is not None:
            report["gt_other_clips_fid"] = fid(gt_emb, evaluator.embed_motion(*other).numpy())
        reports.append(report)
    report = combine_reports(reports)
    report["r_precision_batches"] = batching
    if other is not None:
        report["other_clips_windows"] = int(other[1].shape[0])

    # VQ-VAE reconstruction of the held-out windows, in joint space
    errs, gt_joints = [], []
    for i, n in enumerate(lengths.tolist()):
        true_j = np.asarray(features_to_joints(stats.denormalize(feats[i, :n].double().numpy())))
        pred_j = np.asarray(features_to_joints(stats.denormalize(recon[i, :n])))
        errs.append(mpjpe_mm(pred_j, true_j))
        gt_joints.append(true_j)
    report["recon_mpjpe_mm"] = float(np.mean(errs))

    def physics(joints: list[np.ndarray], prefix: str) -> dict[str, float]:
        skate = [foot_skate_ratio(j) for j in joints if len(j) >= 3]
        pen = [floor_penetration(j) for j in joints]
        return {
            f"{prefix}foot_skate_ratio": float(np.mean(skate)) if skate else None,
            f"{prefix}floor_penetration_m": float(np.mean([p.mean_depth_m for p in pen])),
            f"{prefix}floor_penetration_frames": float(np.mean([p.frame_ratio for p in pen])),
        }

    report.update(physics(gen_joints, ""))
    report.update(physics(gt_joints, "gt_"))
    report["eval_samples"] = len(texts)
    report["eval_motions"] = len(test.ids)
    report["chance_r_precision_top3"] = 3 / 32
    return report


def _other_clip_windows(
    other: MotionDataset, test: MotionDataset, window: int, stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw features and lengths of ``other``'s evaluation windows whose motions mean what a
    held-out motion means (every motion of ``other`` when meanings are unknown)."""
    meanings = {test.record(i).meaning for i in test.ids}
    ids = [i for i in other.ids if other.record(i).meaning in meanings] if None not in meanings else []
    win = other.held_out_windows(ids or other.ids, window=window, stride=stride)
    raw = other.stats.denormalize(win["features"].numpy().astype(np.float64)).astype(np.float32)
    return torch.from_numpy(raw), win["lengths"]


FIT_MOTIONS = 64  # training motions measured for the train_* (fit) metrics


def train_and_evaluate(
    params: PretrainMotionParams,
    checkpoints: Path,
    on_log: Callable[[str, int, dict[str, float]], None] | None = None,
    progress: bool = True,
) -> tuple[StructureModel, dict[str, Any], list[PhaseResult], list[MotionTextEvaluator]]:
    """Everything but writing the outputs; returns the model, metrics, curves and the evaluators.
    Training checkpoints go to ``checkpoints`` (a rerun resumes from the latest complete one)."""
    t0 = time.perf_counter()
    torch.manual_seed(params.seed)
    vq_cfg, gen_cfg = params.vqvae, params.generator
    fpt = vq_cfg.frames_per_token
    data_root = params.input
    if params.variants.enabled:
        data_root = checkpoints / "variants"
        expand_motion_set(
            resolve_motion_root(params.input)[0], data_root, params.variants.speeds, params.variants.turns
        )
    full = MotionDataset(data_root, params.window, frames_per_token=fpt, text_source=params.text_source)
    train_ids, test_ids, how = held_out_split(full.root, full.index, params.test_fraction, params.seed)
    train = full.subset(train_ids)
    test = full.subset(test_ids) if test_ids else None
    encoder = build_text_encoder(params.text_encoder.name, params.text_encoder.path)
    # Every text of the set is encoded once, up front, in one fixed order: a sentence's vector differs
    # in the last float bits with the batch it was padded in, and training that fed on whichever
    # batch came first made a resumed run (no generator batches) train different evaluators.
    encoder.encode(sorted({t for rec in full.records for t in rec.texts}))
    seed = params.seed

    def vq_loss(module, batch):
        out = module(batch["features"], batch["lengths"])
        return out["loss"], {
            "recon": float(out["recon_loss"]),
            "commit": float(out["commit_loss"]),
            "velocity": float(out["velocity_loss"]),
            "perplexity": float(out["perplexity"]),
        }

    def vq_batches(step: int):
        return train.batch(step, params.train_vqvae.batch_size, seed=seed)

    vq, vq_res = _train(
        "vqvae", MotionVQVAE(vq_cfg), params.train_vqvae, seed, vq_loss, vq_batches,
        checkpoints / "vqvae", on_log, progress,
    )  # fmt: skip
    for p in vq.parameters():
        p.requires_grad_(False)

    def gen_batches(step: int):
        b = train.batch(step, params.train_generator.batch_size, seed=seed + 1)
        with torch.no_grad():
            b["codes"] = vq.encode(b["features"])
        b["text_emb"] = _embed_texts(encoder, b["texts"])
        return b

    def gen_loss(module, batch):
        out = module(batch["codes"], batch["lengths"] // fpt, batch["text_emb"], batch["ends"])
        return out["loss"], {"accuracy": float(out["accuracy"])}

    gen, gen_res = _train(
        "generator", MotionGenerator(gen_cfg), params.train_generator, seed, gen_loss, gen_batches,
        checkpoints / "generator", on_log, progress,
    )  # fmt: skip
    model = StructureModel(
        vq, gen, full.stats, params.text_encoder.name,
        None if params.text_encoder.path is None else str(params.text_encoder.path),
        window=params.window, text_encoder=encoder,
    )  # fmt: skip

    # the evaluator learns on the training split only (raw features; it normalises inside)
    ev = params.evaluation

    # trained on windows of the length it judges (the evaluation window), with the motions' meanings
    # (action + variant) marking false negatives
    eval_train = train.with_window(ev.window)

    def eval_batches(step: int):
        b = eval_train.batch(step, ev.evaluator_batch, seed=seed + 2)
        raw = full.stats.denormalize(b["features"].numpy().astype(np.float64)).astype(np.float32)
        return {
            "features": torch.from_numpy(raw),
            "lengths": b["lengths"],
            "text_emb": _embed_texts(encoder, b["texts"]),
            "labels": b["meanings"],
        }

    evaluators, eval_curves = [], []
    for k in range(ev.evaluators):
        # its own seed for the initial weights too, not whatever state training left the global RNG in
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 7 * k)
            evaluator = MotionTextEvaluator(params.evaluator, stats=full.stats)
        curve = train_evaluator(
            evaluator, eval_batches, ev.evaluator_steps, lr=ev.evaluator_lr, seed=seed + k, progress=progress
        )
        eval_curves.append(curve)
        evaluators.append(evaluator)
    mean_curve = np.mean(eval_curves, axis=0)
    phases = [
        vq_res,
        gen_res,
        PhaseResult("evaluator", [{"step": i + 1, "loss": float(v)} for i, v in enumerate(mean_curve)]),
    ]

    metrics: dict[str, Any] = {
        "split": how,
        "train_motions": len(train_ids),
        "test_motions": len(test_ids),
        "evaluator": "ours (contrastive, trained on our training split)",
    }
    if test is not None:
        metrics.update(evaluate(model, evaluators, test, params, progress=progress, other_clips=train))
        # the same metrics on training windows show the fit, never to be read as generalisation;
        # an evenly spaced subset of FIT_MOTIONS training motions keeps this check cheap
        step = max(1, len(train_ids) // FIT_MOTIONS)
        fit = evaluate(
            model,
            evaluators,
            train.subset(train.ids[::step]),
            params.model_copy(update={"evaluation": ev.model_copy(update={"replications": 2})}),
        )
        metrics["train_fit_motions"] = len(train.ids[::step])
        metrics.update(
            {
                f"train_{k}": fit[k]
                for k in ("r_precision_top1", "r_precision_top3", "fid", "gt_r_precision_top3")
            }
        )
    metrics.update(
        {
            "vqvae_final_loss": vq_res.history[-1]["loss"] if vq_res.history else None,
            "generator_final_loss": gen_res.history[-1]["loss"] if gen_res.history else None,
            "zero_stage": vq_res.zero_stage,
            "world_size": vq_res.world_size,
            "resumed_from": gen_res.resumed_from or vq_res.resumed_from,
            "seconds": round(time.perf_counter() - t0, 2),
        }
    )
    return model, metrics, phases, evaluators


GRID_PROMPTS = (
    "a person walks forward", "a person runs", "a person jumps", "a person does a cartwheel",
    "a person kicks", "a person dances",
)  # fmt: skip


def prompt_grid(
    model: StructureModel,
    prompts: tuple[str, ...] = GRID_PROMPTS,
    frames: int = 48,
    step: int = 8,
    seed: int = 0,
    **sampling: Any,
) -> np.ndarray:
    """uint8 RGB image: one row of 3D stick frames (every ``step``-th) per prompt, prompt written on it.
    ``sampling`` goes to ``StructureModel.generate`` (guidance, top_k, temperature, fill)."""
    import cv2

    rows = []
    for prompt in prompts:
        joints = model.generate(prompt, frames, seed=seed, **sampling)
        floor = float(joints[..., 1].min())
        row = np.concatenate(
            [draw_stick_3d(joints[t], 160, 160, ground=floor) for t in range(0, frames, step)], 1
        )
        cv2.putText(row, prompt, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        rows.append(row)
    return np.concatenate(rows, 0)
