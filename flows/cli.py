"""The ``mosa`` command line: runs the same flows as the DVC stages on any input."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.config import ConfigError

DEFAULT_PARAMS = "params.yaml"


def _sources_from_inputs(inputs: list[str]) -> list[dict]:
    sources: list[dict] = []
    demo: list[str] = []
    for raw in inputs:
        if raw.startswith("demo:"):
            demo.append(raw.removeprefix("demo:"))
            continue
        path = Path(raw)
        if path.is_dir():
            sources.append({"kind": "folder", "path": str(path)})
        elif path.is_file() and path.suffix.lower() in (".csv", ".jsonl", ".ndjson"):
            sources.append({"kind": "manifest", "path": str(path)})
        elif path.exists():
            raise ConfigError(f"--input {raw}: a file input must be a .csv or .jsonl manifest")
        else:
            raise ConfigError(f"--input {raw}: no such folder or manifest (or use demo:NAME)")
    if demo:
        sources.append({"kind": "demo", "videos": demo})
    return sources


def _ingest(args: argparse.Namespace) -> int:
    # lazy: each subcommand loads only what it runs (torch, MLflow, GX); `mosa --help` stays instant
    from flows.ingest import ingest

    overrides: dict = {}
    metrics_file: str | None = "metrics/ingest.json"
    if args.input:
        overrides["sources"] = _sources_from_inputs(args.input)
        out = Path(args.output or "ingest_output")
        overrides["output"] = str(out)
        overrides["reports"] = str(out / "reports")
        metrics_file = None  # metrics land in <output>/reports/metrics.json, not the DVC metrics
    elif args.output:
        overrides["output"] = args.output
    params_path: str | None = args.params
    if args.input and args.params == DEFAULT_PARAMS and not Path(DEFAULT_PARAMS).is_file():
        params_path = None  # outside the repository: schema defaults
    ingest(params_path=params_path, overrides=overrides, metrics_file=metrics_file)
    return 0


def _motion_preview(args: argparse.Namespace) -> int:
    # lazy: each subcommand loads only what it runs (torch, MLflow, GX); `mosa --help` stays instant
    from components.io.video import write_h264
    from components.motion.config import parse_camera
    from components.motion.preview import load_motion_source, render_preview

    camera = parse_camera(args.camera)
    if args.height % 2 or args.width % 2:
        raise ValueError(f"--height and --width must be even, got {args.height}x{args.width}")
    motion = load_motion_source(args.source)
    frames = render_preview(motion, camera, args.height, args.width, progress=True)
    write_h264(Path(args.out), frames, motion.fps)
    print(f"motion-preview: {motion.num_frames} frames at {motion.fps:g} fps ({motion.name}) -> {args.out}")
    return 0


def _motion(args: argparse.Namespace) -> int:
    """Text → 3D joints with the trained structure transformer, then the skeleton video."""
    # lazy: each subcommand loads only what it runs (torch, MLflow, GX); `mosa --help` stays instant
    import numpy as np

    from components.io.video import write_h264
    from components.motion.config import parse_camera
    from components.motion.motion import Motion
    from components.motion.preview import render_preview
    from components.motion.structure import StructureModel

    if not args.prompt.strip():
        raise ValueError("the prompt is empty; describe a motion, e.g. 'a person does a cartwheel'")
    if args.frames < 1:
        raise ValueError(f"--frames must be positive, got {args.frames}")
    camera = parse_camera(args.camera)
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"no motion model in {model_dir}: run `dvc repro pretrain_motion` (or pass --model DIR)"
        )
    model = StructureModel.from_pretrained(model_dir)
    joints = model.generate(
        args.prompt, args.frames, seed=args.seed, guidance=args.guidance, top_k=args.top_k,
        temperature=args.temperature, fill=args.fill,
    )  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out.with_suffix(".npy"), joints.astype(np.float32))
    motion = Motion(joints, fps=model.fps, name=args.prompt, source=str(model_dir))
    frames = render_preview(motion, camera, args.height, args.width, progress=True)
    write_h264(out, frames, model.fps)
    print(f"motion: {len(joints)} frames at {model.fps:g} fps -> {out} and {out.with_suffix('.npy')}")
    return 0


def resolve_pipeline(model: str) -> Path:
    """A local pipeline folder for ``--model``: a path, or a registry URI ``models:/NAME@ALIAS``
    (its ``pipeline`` artifact is downloaded from the tracking server / sqlite store)."""
    if model.startswith("models:/"):
        # lazy: each subcommand loads only what it runs (torch, MLflow, GX); `mosa --help` stays instant
        from flows.stage import tracking_uri, use_tracking_uri

        use_tracking_uri()
        # lazy: each subcommand loads only what it runs (torch, MLflow, GX); `mosa --help` stays instant
        from components.registry.pyfunc import download_pipeline

        try:
            return download_pipeline(model)
        except Exception as exc:  # MlflowException / missing alias / not a MoSA model
            raise FileNotFoundError(
                f"cannot load {model} from {tracking_uri()}: {exc}; run `dvc repro register` or pass "
                "--model models/dit"
            ) from exc
    # lazy: each subcommand loads only what it runs (torch, MLflow, GX); `mosa --help` stays instant
    from components.dit.pipeline import is_pipeline_folder

    path = Path(model)
    if not is_pipeline_folder(path):
        raise FileNotFoundError(
            f"no generation pipeline in {path}: run `dvc repro train_dit` (it writes models/dit) "
            "or pass --model models:/mosa-dit@champion"
        )
    return path


def _generate(args: argparse.Namespace) -> int:
    """Text (and optionally a first-frame image) to a human video with the trained pipeline."""
    # lazy: each subcommand loads only what it runs (torch, MLflow, GX); `mosa --help` stays instant
    import numpy as np

    from components.dit.pipeline import MoSAPipeline, is_pipeline_folder
    from components.io.video import write_h264
    from components.motion.config import parse_camera

    if not args.prompt.strip():
        raise ValueError("the prompt is empty; describe the person and the motion, e.g. 'a man runs'")
    parse_camera(args.camera)  # a bad camera spec fails before any model loads
    model = args.model
    if model is None:
        model = "models/dit" if is_pipeline_folder("models/dit") else "models:/mosa-dit@champion"
    pipe = MoSAPipeline.from_pretrained(resolve_pipeline(model))
    image = None
    if args.image:
        import cv2

        img = cv2.imread(args.image, cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"--image {args.image}: not a readable image")
        d = pipe.defaults
        image = cv2.resize(
            cv2.cvtColor(img, cv2.COLOR_BGR2RGB), (d.width, d.height), interpolation=cv2.INTER_AREA
        )
    out = pipe(
        args.prompt, camera=args.camera, seed=args.seed, steps=args.steps, guidance=args.guidance,
        image=image, progress=True,
    )  # fmt: skip
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_h264(path, out.frames, pipe.defaults.fps)
    print(f"generate: {len(out.frames)} frames -> {path} (motion prompt: {out.motion_prompt!r})")
    if args.save_skeleton:
        skel = path.with_name(path.stem + "_skeleton.mp4")
        write_h264(skel, out.skeleton, pipe.defaults.fps)
        if out.joints is not None:
            np.save(path.with_suffix(".npy"), out.joints.astype(np.float32))
        print(f"generate: skeleton -> {skel}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    """Promote a registered version by hand: the gate of params.yaml ``register`` still decides
    unless ``--force``; the outcome (``manual`` or ``rejected``) is appended to the promotion log.
    The same function runs in the Prefect flow ``promote`` (flows/promote.py)."""
    # lazy: each subcommand loads only what it runs (torch, MLflow, GX); `mosa --help` stays instant
    from flows.promote import promote_version

    res = promote_version(args.version, args.model_name, params_path=args.params, force=args.force)
    return 0 if res.decision.promote else 1


def _rollback(args: argparse.Namespace) -> int:
    """Point ``champion`` back at the previous champion; the rollback is appended to the promotion log.
    The same function runs in the Prefect flow ``rollback`` (flows/promote.py)."""
    # lazy: each subcommand loads only what it runs (torch, MLflow, GX); `mosa --help` stays instant
    from components.registry.promote import RegistryError
    from flows.promote import rollback_champion

    try:
        rollback_champion(args.model_name, params_path=args.params)
    except RegistryError as exc:
        raise ValueError(str(exc)) from exc
    return 0


def _plan_memory(args: argparse.Namespace) -> int:
    """Per-GPU memory plan of a GPU profile, built on the meta device (no weights needed)."""
    # lazy: each subcommand loads only what it runs (torch, MLflow, GX); `mosa --help` stays instant
    from components.dit.memory_plan import format_plan, load_profile, plan_memory

    profile = load_profile(args.profile)
    plan = plan_memory(profile, gpus=args.gpus, zero=args.zero)
    print(format_plan(plan, profile))
    return 0


def _profile(args: argparse.Namespace) -> int:
    """The `dvc exp run` command that switches the pipeline to a GPU profile."""
    # lazy: each subcommand loads only what it runs (torch, MLflow, GX); `mosa --help` stays instant
    import shlex

    from components.dit.memory_plan import load_profile

    profile = load_profile(args.profile)

    def value(v) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    sets = " ".join(f"-S {shlex.quote(f'{k}={value(v)}')}" for k, v in profile.overrides.items())
    print(f"# {profile.profile}: {profile.description}")
    print(f"dvc exp run {sets}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mosa", description="MoSA pipeline command line")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ingest", help="clip, score and validate videos (the DVC 'ingest' stage)")
    p.add_argument(
        "--input",
        action="append",
        metavar="PATH",
        help="folder of videos, CSV/JSONL manifest, or demo:NAME; repeat for several (default: params.yaml)",
    )
    p.add_argument("--output", help="output folder (default with --input: ./ingest_output)")
    p.add_argument("--params", default=DEFAULT_PARAMS, help="params file for clip/quality settings")
    p.set_defaults(func=_ingest)
    p = sub.add_parser("motion-preview", help="render a motion as a skeleton video beside a 3D stick view")
    p.add_argument(
        "source", help="DeepMimic clip name (e.g. walk, backflip), .txt, .bvh or .npy joints [T,22,3]"
    )
    p.add_argument(
        "--camera", default="fixed", help="fixed | track | orbit | dolly | pan, with options: orbit:sweep=180"
    )
    p.add_argument("--out", default="preview.mp4", help="output mp4")
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=384)
    p.set_defaults(func=_motion_preview)

    p = sub.add_parser("motion", help="generate a 3D motion from text and render its skeleton video")
    p.add_argument("prompt", help='e.g. "a person does a cartwheel"')
    p.add_argument("--frames", type=int, default=120, help="frames at 20 fps")
    p.add_argument("--camera", default="fixed", help="fixed | track | orbit | dolly | pan, with options")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance", type=float, default=2.5, help="classifier-free guidance scale")
    p.add_argument(
        "--top-k", type=int, default=3, help="sample among the k likeliest tokens (1 = greedy; as evaluated)"
    )
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (as evaluated)")
    p.add_argument(
        "--fill", choices=("hold", "continue"), default="hold",
        help="hold: the motion may end early and its last pose is held; continue: it keeps going",
    )  # fmt: skip
    p.add_argument("--model", default="models/motion", help="folder written by pretrain_motion")
    p.add_argument("--out", default="motion.mp4", help="output mp4; the joints go beside it as .npy")
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=384)
    p.set_defaults(func=_motion)

    p = sub.add_parser("generate", help="text to human video with the trained MoSA pipeline")
    p.add_argument("prompt", help='e.g. "a man runs and jumps over a bench"')
    p.add_argument("--out", default="out.mp4")
    p.add_argument(
        "--camera", default="track",
        help="track (default: the camera follows the person, who keeps their size) | fixed | orbit | dolly "
        "| pan, with options: fixed:azimuth=90",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the pipeline's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    p.add_argument("--image", default=None, help="first-frame image (image-to-video)")
    p.add_argument(
        "--model", default=None, help="models:/mosa-dit@champion or a pipeline folder (default: models/dit)"
    )
    p.add_argument("--save-skeleton", action="store_true", help="also write the skeleton video and joints")
    p.set_defaults(func=_generate)

    p = sub.add_parser("promote", help="gate a registered model version and move `champion` if it passes")
    p.add_argument("version", help="model version number")
    p.add_argument("--model-name", default=None, help="default: register.model_name of params.yaml")
    p.add_argument("--params", default=DEFAULT_PARAMS)
    p.add_argument(
        "--force", action="store_true", help="move `champion` even if the gate rejects (logged as manual)"
    )
    p.set_defaults(func=_promote)

    p = sub.add_parser("rollback", help="move `champion` back to the previous champion")
    p.add_argument("--model-name", default=None, help="default: register.model_name of params.yaml")
    p.add_argument("--params", default=DEFAULT_PARAMS, help="params file (register.promotions: the log)")
    p.set_defaults(func=_rollback)

    p = sub.add_parser("plan-memory", help="per-GPU memory plan of a GPU profile (meta device, no weights)")
    p.add_argument("--profile", required=True, help="infra/profiles/<name>.yaml")
    p.add_argument("--gpus", type=int, default=None, help="override the profile's GPU count")
    p.add_argument("--zero", type=int, choices=(1, 2, 3), default=None, help="ZeRO stage to judge")
    p.set_defaults(func=_plan_memory)

    p = sub.add_parser("profile", help="print the `dvc exp run -S ...` command that applies a GPU profile")
    p.add_argument("profile", help="infra/profiles/<name>.yaml")
    p.set_defaults(func=_profile)

    args = parser.parse_args(argv)
    # lazy: each subcommand loads only what it runs (torch, MLflow, GX); `mosa --help` stays instant
    from components.data.expectations import ManifestValidationError

    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"mosa {args.command}: {exc}", file=sys.stderr)
        return 2
    except ManifestValidationError as exc:
        print(f"mosa {args.command}: data validation failed, previous outputs kept: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
