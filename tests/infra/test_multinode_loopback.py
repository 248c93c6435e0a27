"""Two "nodes" on this machine over loopback: ``infra/launch/torchrun_multinode.sh`` started twice
(``NNODES=2``, ``NODE_RANK=0``/``1``, ``MASTER_ADDR=127.0.0.1``, one gloo rank per node), each in its
own working folder, run the real ``train_dit`` stage at tiny size under ZeRO-2 and ZeRO-3.

Both nodes share the checkpoint folder (as a shared filesystem would) and one Prefect server (as
``infra/launch/README.md`` asks). The first run saves checkpoints at steps 2 and 4 on all ranks; the
step-4 checkpoint is then removed (a job stopped after step 2) and the same launch resumes from step 2
and ends on exactly the weights of the uninterrupted run. Identical weights on the two nodes: each
rank's digest of its final model (a test hook, ``sitecustomize.py`` on the ranks' ``PYTHONPATH``), the
per-rank metrics line each node logs, and the fp32 weights DeepSpeed reassembles from both ranks'
checkpoint shards, which must equal the model node 0 exported.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import psutil
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "infra" / "launch" / "torchrun_multinode.sh"
PREFECT = str(Path(sys.executable).with_name("prefect"))
FRAMES, HEIGHT, WIDTH, FPS = 9, 64, 96, 8.0
STEPS, EVERY = 4, 2
LAUNCH_TIMEOUT = 360.0
# what both ranks must log alike: everything but timings and the per-rank loss terms (each rank sees
# its own batches; only the total is averaged over ranks)
SHARED_METRICS = (
    "steps", "zero_stage", "world_size", "resumed_from", "loss_total", "clips_train", "follow_clips",
    "mosa_person_region_l1", "mosa_skeleton_mask_iou", "base_person_region_l1", "base_skeleton_mask_iou",
    "parameters_trainable", "parameters_frozen",
)  # fmt: skip

# Runs first in every rank (PYTHONPATH): after train_mosa returns, the rank writes a sha256 of its
# final model's state dict. The launcher process itself has no RANK and is left alone.
HOOK = '''\
"""Test hook: every train_dit rank records a digest of the weights it ends with."""

import os

if os.environ.get("MOSA_TEST_DIGESTS") and "RANK" in os.environ:
    import hashlib
    import json
    from pathlib import Path

    import components.dit.train as _train

    _train_mosa = _train.train_mosa

    def _recording_train_mosa(*args, **kwargs):
        model, result = _train_mosa(*args, **kwargs)
        h = hashlib.sha256()
        for name, value in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
        report = {"sha256": h.hexdigest(), "steps": result.steps, "resumed_from": result.resumed_from}
        out = Path(os.environ["MOSA_TEST_DIGESTS"]) / f"rank{os.environ['RANK']}.json"
        out.write_text(json.dumps(report))
        return model, result

    _train.train_mosa = _recording_train_mosa
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env() -> dict[str, str]:
    """This process's environment without launcher, Prefect and MLflow settings."""
    drop = ("PREFECT_", "MLFLOW_", "MASTER_", "NNODES", "NODE_RANK", "NPROC", "MOSA_", "DRY_RUN")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "PYTHONPATH"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """One ``prefect server start`` on a free loopback port that both nodes report to."""
    home = tmp_path_factory.mktemp("prefect")
    port, log = _free_port(), home / "server.log"
    env = {
        **_clean_env(),
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 150
        while True:
            assert proc.poll() is None, f"prefect server exited:\n{log.read_text()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"prefect server not healthy:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield api
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """What train_dit reads, tiny: a random-weight base (9 frames, 64x96) and motion model, and four
    synthetic clips ingested and annotated at the base's size."""
    from components.backbone.config import TinyConfig
    from components.backbone.spec import get_spec
    from components.base.bundle import BaseBundle, make_config
    from components.base.token_encoder import TokenTextEncoder
    from tests.flows.test_evaluate_main import tiny_annotated_clips
    from tests.helpers.tiny_pipeline import tiny_structure_model

    root = tmp_path_factory.mktemp("inputs")
    torch.set_num_threads(1)
    text = TokenTextEncoder("minilm", max_tokens=8)
    spec = get_spec("cogvideox")
    tiny = TinyConfig(
        sample_frames=FRAMES, sample_height=HEIGHT, sample_width=WIDTH, text_dim=text.dim, seed=0
    )
    config = make_config(spec, tiny, text, FRAMES, HEIGHT, WIDTH, FPS)
    bundle = BaseBundle(spec=spec, models=spec.build_tiny(tiny), text=text, depth=None, config=config)
    bundle.save_pretrained(root / "base")
    tiny_structure_model(0).save_pretrained(root / "motion")
    tiny_annotated_clips(root, FRAMES, HEIGHT, WIDTH, FPS)
    return root


def _params(inputs: Path, shared: Path, zero_stage: int) -> str:
    """train_dit at tiny size; inputs, checkpoints and cache on the "shared filesystem", outputs
    (models/, reports/, plots/, metrics/) relative to each node's working folder."""
    return textwrap.dedent(
        f"""\
        train_dit:
          ingest: {inputs / "ingest"}
          annotate: {inputs / "annotate"}
          base: {inputs / "base"}
          motion: {inputs / "motion"}
          checkpoints: {shared / "checkpoints"}
          cache: {shared / "cache"}
          mosa: {{num_structure_blocks: 1, skeleton_encoder: vae, structure: 2d, hadc: "on"}}
          losses: {{contact_enabled: false, mask: 0.001, track: 0.01, track_mode: temporal}}
          steps: {STEPS}
          checkpoint_every: {EVERY}
          batch_size: 1
          warmup_steps: 1
          aux_every: 2
          aux_samples: 1
          track_points: 8
          zero_stage: {zero_stage}
          follow: {{clips: 1, steps: 1}}
        """
    )


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a node's torchrun and its workers (torch elastic puts each worker in its own session)."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for pid in [proc.pid, *(c.pid for c in children)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    proc.wait()
    psutil.wait_procs(children, timeout=30)


def _launch(nodes: list[Path], api: str, hook: Path, digests: Path) -> list[str]:
    """Start node 0 and node 1 through the launch script, wait for both, return their logs."""
    port = _free_port()
    procs, logs = [], [node / "launch.log" for node in nodes]
    for rank, node in enumerate(nodes):
        env = {
            **_clean_env(),
            "NNODES": "2", "NODE_RANK": str(rank), "NPROC_PER_NODE": "1",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
            "MOSA_WORKDIR": str(node), "PREFECT_API_URL": api, "PREFECT_HOME": str(node / ".prefect"),
            "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(hook), "MOSA_TEST_DIGESTS": str(digests),
        }  # fmt: skip
        with logs[rank].open("w") as out:
            procs.append(
                subprocess.Popen(
                    ["bash", str(SCRIPT), "train_dit"],
                    env=env,
                    cwd=node,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    try:  # a node that fails leaves the other waiting at a collective: stop it at once
        while any(p.poll() is None for p in procs) and not any(p.poll() for p in procs):
            assert time.monotonic() < deadline, f"the nodes did not finish within {LAUNCH_TIMEOUT:.0f} s"
            time.sleep(0.5)
    finally:
        for proc in procs:
            if proc.poll() is None:
                _kill_tree(proc)
        texts = [log.read_text(errors="replace") for log in logs]
        for rank, text in enumerate(texts):
            print(f"--- node {rank} (exit {procs[rank].returncode}) ---\n{text[-3000:]}")
    for rank, (proc, text) in enumerate(zip(procs, texts, strict=True)):
        assert proc.returncode == 0, f"node {rank} exited {proc.returncode}:\n{text[-5000:]}"
    return texts


def _metrics_line(log: str) -> dict[str, str]:
    """The stage's closing ``train_dit: key value, ...`` line, as strings."""
    lines = re.findall(r"train_dit: (steps \d+, .*)$", log, flags=re.MULTILINE)
    assert len(lines) == 1, log[-3000:]
    return dict(item.split(" ", 1) for item in lines[0].split(", "))


def _digests(folder: Path) -> list[dict]:
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]


def _consolidated(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The fp32 weights DeepSpeed reassembles from every rank's ZeRO shards of one checkpoint."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint.parent), tag=checkpoint.name)


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _check_run(logs: list[str], digests: Path, zero_stage: int, resumed_from: int | None) -> str:
    """Both nodes report the same finished run; returns the weights digest they share."""
    lines = [_metrics_line(log) for log in logs]
    expected = {"steps": str(STEPS), "zero_stage": str(zero_stage), "world_size": "2"}
    expected["resumed_from"] = str(resumed_from)
    for line in lines:
        assert {k: line[k] for k in expected} == expected, line
    assert {k: lines[0][k] for k in SHARED_METRICS} == {k: lines[1][k] for k in SHARED_METRICS}
    assert "node 0 of 2" in logs[0] and "node 1 of 2" in logs[1]
    assert "PREFECT_API_URL is unset" not in logs[0] + logs[1]
    reports = _digests(digests)
    for report in reports:
        assert (report["steps"], report["resumed_from"]) == (STEPS, resumed_from)
    assert reports[0]["sha256"] == reports[1]["sha256"]  # the two nodes end with identical weights
    logged = [re.findall(r"train_dit: rank (\d+) weights sha256 ([0-9a-f]{64})", log) for log in logs]
    if any(logged):  # a stage that logs its own per-rank digest (same definition) must agree
        assert logged == [[("0", reports[0]["sha256"])], [("1", reports[0]["sha256"])]], logged
    return reports[0]["sha256"]


def _check_checkpoint(checkpoint: Path, zero_stage: int) -> None:
    """A complete checkpoint with files written by both ranks."""
    marker = json.loads((checkpoint / "COMPLETE.json").read_text())
    assert (marker["step"], marker["world_size"], marker["zero_stage"]) == (
        int(checkpoint.name.split("-")[1]),
        2,
        zero_stage,
    )
    per_rank = ["rng_rank00000.pt", "rng_rank00001.pt"] + [
        f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in range(2)
    ]
    if zero_stage == 3:
        per_rank += [f"zero_pp_rank_{r}_mp_rank_00_model_states.pt" for r in range(2)]
    else:
        per_rank += ["mp_rank_00_model_states.pt"]
    assert set(per_rank) <= set(marker["files"]), sorted(marker["files"])


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_two_nodes_over_loopback_train_checkpoint_and_resume(zero_stage, inputs, prefect_api, tmp_path):
    shared, hook = tmp_path / "shared", tmp_path / "hook"
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    for folder in (*nodes, hook):
        folder.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    for node in nodes:
        (node / "params.yaml").write_text(_params(inputs, shared, zero_stage))

    first = tmp_path / "digests-first"
    first.mkdir()
    digest = _check_run(_launch(nodes, prefect_api, hook, first), first, zero_stage, resumed_from=None)

    (ckpt_dir,) = (shared / "checkpoints").iterdir()  # one folder: both nodes keyed the same run
    step2, step4 = ckpt_dir / "step-00000002", ckpt_dir / "step-00000004"
    for checkpoint in (step2, step4):
        _check_checkpoint(checkpoint, zero_stage)
    # the shards of both ranks reassemble into exactly the model node 0 exported
    from safetensors.torch import load_file

    final = _consolidated(step4)
    exported = load_file(str(nodes[0] / "models" / "dit" / "mosa" / "model.safetensors"))
    _assert_same(final, {k: exported[k] for k in final})
    if zero_stage == 2:  # rank 0's full replica, saved beside the optimizer shards
        module = torch.load(step4 / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
        _assert_same(final, {k: module["module"][k].float() for k in final})
    assert not (nodes[1] / "models").exists()  # only rank 0 writes the stage's outputs
    at_step2 = _consolidated(step2)
    assert any(not torch.equal(at_step2[k], final[k]) for k in final)  # steps 3-4 changed the weights

    # a job stopped after step 2: the newest checkpoint is gone; the same launch resumes from step 2
    shutil.rmtree(step4)
    again = tmp_path / "digests-resumed"
    again.mkdir()
    resumed = _check_run(_launch(nodes, prefect_api, hook, again), again, zero_stage, resumed_from=EVERY)
    assert resumed == digest  # exact resume: the uninterrupted run's weights, on both nodes
    _check_checkpoint(step4, zero_stage)
    _assert_same(_consolidated(step4), final)
