"""Launch scripts: syntax, stage validation before anything starts, the exact commands they build,
and the SLURM job's per-node expansion through fake ``srun``/``scontrol``/``torchrun``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "infra" / "launch"
SCRIPTS = [
    "torchrun_local.sh",
    "torchrun_multinode.sh",
    "deepspeed_multinode.sh",
    "slurm_train_dit.sbatch",
    "slurm_pretrain_motion.sbatch",
]
LAUNCHERS = ("torchrun", "deepspeed", "srun", "scontrol")


@pytest.fixture
def fake_bin(tmp_path) -> tuple[Path, Path]:
    """A bin folder whose launchers only record how they were called (cwd and argv)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "launch.log"
    bin_dir.mkdir()
    for name in ("torchrun", "deepspeed"):
        _script(bin_dir / name, f'echo "{name} $PWD $*" >> "$LAUNCH_LOG"')
    # srun: run the trailing `bash -c CMD` once per node, as SLURM would, with that node's SLURM_NODEID
    _script(
        bin_dir / "srun",
        'echo "srun $*" >> "$LAUNCH_LOG"; nodes=1\n'
        "while [[ $# -gt 0 ]]; do\n"
        '  case "$1" in --nodes) nodes="$2"; shift 2 ;; bash) break ;; *) shift ;; esac\n'
        "done\n"
        'for ((i = 0; i < nodes; i++)); do SLURM_NODEID=$i "$@"; done',
    )
    _script(bin_dir / "scontrol", '[[ "$1 $2" == "show hostnames" ]] && printf "node-a\\nnode-b\\n"')
    return bin_dir, log


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!/usr/bin/env bash\nset -euo pipefail\n{body}\n")
    path.chmod(0o755)


def _run(script: str, *args: str, fake: tuple[Path, Path], **env: str) -> subprocess.CompletedProcess:
    bin_dir, log = fake
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "MASTER_", "NUM_", "DRY_RUN", "NNODES", "NODE_RANK", "NPROC"))
    }
    clean.pop("PREFECT_API_URL", None)
    full = {**clean, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LAUNCH_LOG": str(log), **env}
    return subprocess.run(
        ["bash", str(LAUNCH / script), *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=bin_dir,
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_syntax_strict_mode_and_stage_documented(script):
    path = LAUNCH / script
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert "MOSA_PROFILE=infra/profiles/cogvideox-5b.yaml" in text and "dvc exp run" in text


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck_clean(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    proc = subprocess.run(["shellcheck", "-s", "bash", str(LAUNCH / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("stage", ["evaluate", "train-dit", "train_dit;ls"])
def test_unknown_stage_refused_before_launching(script, stage, fake_bin):
    proc = _run(
        script,
        stage,
        fake=fake_bin,
        HOSTFILE=str(LAUNCH / "hostfile.example"),
        SLURM_JOB_ID="1",
        SLURM_NNODES="2",
        SLURM_JOB_NODELIST="node-[a-b]",
        MOSA_REPO=str(REPO),
    )
    assert proc.returncode == 2
    assert f"error: unknown stage '{stage}'; expected train_dit or pretrain_motion" in proc.stderr
    assert not fake_bin[1].exists()  # no launcher was called


@pytest.mark.parametrize("script", ["torchrun_local.sh", "deepspeed_multinode.sh", "torchrun_multinode.sh"])
def test_missing_stage_refused(script, fake_bin):
    proc = _run(script, fake=fake_bin, HOSTFILE=str(LAUNCH / "hostfile.example"))
    assert proc.returncode == 2
    assert "error: no stage given; expected train_dit or pretrain_motion" in proc.stderr
    assert "usage: " in proc.stderr and not fake_bin[1].exists()


def test_torchrun_local_dry_run_prints_the_command(fake_bin):
    proc = _run("torchrun_local.sh", "train_dit", fake=fake_bin, DRY_RUN="1", NPROC="3")
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stdout.strip()
        == "torchrun --standalone --nproc_per_node 3 -m flows.train_dit --params params.yaml"
    )
    proc = _run(
        "torchrun_local.sh",
        "pretrain_motion",
        fake=fake_bin,
        DRY_RUN="1",
        NPROC="2",
        MOSA_PARAMS="gpu params.yaml",
    )
    cmd = r"torchrun --standalone --nproc_per_node 2 -m flows.pretrain_motion --params gpu\ params.yaml"
    assert proc.stdout.strip() == cmd
    assert not fake_bin[1].exists()


def test_torchrun_local_rejects_bad_nproc(fake_bin):
    proc = _run("torchrun_local.sh", "train_dit", fake=fake_bin, DRY_RUN="1", NPROC="two")
    assert proc.returncode == 2 and "NPROC='two' is not a positive integer" in proc.stderr


@pytest.mark.parametrize("stage", ["pretrain_motion", "train_dit"])
def test_torchrun_local_launches_from_the_repository_root(stage, fake_bin):
    proc = _run("torchrun_local.sh", stage, fake=fake_bin, NPROC="2")
    if not (REPO / "flows" / f"{stage}.py").is_file():  # a stage still being built: refused, not launched
        assert proc.returncode == 2 and f"flows/{stage}.py not found" in proc.stderr
        assert not fake_bin[1].exists()
        return
    assert proc.returncode == 0, proc.stderr
    assert fake_bin[1].read_text().splitlines() == [
        f"torchrun {REPO} --standalone --nproc_per_node 2 -m flows.{stage} --params params.yaml"
    ]
    assert "PREFECT_API_URL is unset" in proc.stderr


MULTINODE = {"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "node-a"}


def test_torchrun_multinode_dry_run_prints_the_command(fake_bin):
    proc = _run("torchrun_multinode.sh", "train_dit", fake=fake_bin, DRY_RUN="1", **MULTINODE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        *("torchrun", "--nnodes", "2", "--node_rank", "1", "--nproc_per_node", "1"),
        *("--master_addr", "node-a", "--master_port", "29500"),
        *("-m", "flows.train_dit", "--params", "params.yaml"),
    ]
    custom = {**MULTINODE, "NNODES": "4", "NODE_RANK": "3", "MASTER_PORT": "6000", "NPROC_PER_NODE": "8"}
    proc = _run("torchrun_multinode.sh", "pretrain_motion", "--x", fake=fake_bin, DRY_RUN="1", **custom)
    assert proc.stdout.split()[1:13] == [
        *("--nnodes", "4", "--node_rank", "3", "--nproc_per_node", "8"),
        *("--master_addr", "node-a", "--master_port", "6000", "-m", "flows.pretrain_motion"),
    ]
    assert proc.stdout.split()[-1] == "--x" and not fake_bin[1].exists()


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"NNODES": ""}, "NNODES is not set"),
        ({"NODE_RANK": ""}, "NODE_RANK is not set"),
        ({"MASTER_ADDR": ""}, "MASTER_ADDR is not set"),
        ({"NNODES": "0"}, "NNODES='0' is not a positive integer"),
        ({"NODE_RANK": "2"}, "NODE_RANK='2' must be an integer in 0..1 (NNODES=2)"),
        ({"NODE_RANK": "-1"}, "NODE_RANK='-1' must be an integer in 0..1"),
        ({"NODE_RANK": "01"}, "NODE_RANK='01' must be an integer in 0..1"),
        ({"MASTER_ADDR": "a b"}, "MASTER_ADDR='a b' is not a host name or address"),
        ({"MASTER_PORT": "70000"}, "MASTER_PORT='70000' is not a port number"),
        ({"MASTER_PORT": "port"}, "MASTER_PORT='port' is not a port number"),
        ({"NPROC_PER_NODE": "0"}, "NPROC_PER_NODE='0' is not a positive integer"),
    ],
)
def test_torchrun_multinode_rejects_bad_settings(knobs, message, fake_bin):
    env = {k: v for k, v in {**MULTINODE, **knobs}.items() if v}
    proc = _run("torchrun_multinode.sh", "train_dit", fake=fake_bin, DRY_RUN="1", **env)
    assert proc.returncode == 2 and f"error: {message}" in proc.stderr, proc.stderr
    assert proc.stdout == "" and not fake_bin[1].exists()


def test_torchrun_multinode_runs_in_the_workdir_with_the_repository_importable(fake_bin, tmp_path):
    work = tmp_path / "node1"
    work.mkdir()
    missing = _run("torchrun_multinode.sh", "train_dit", fake=fake_bin, MOSA_WORKDIR=str(work), **MULTINODE)
    assert missing.returncode == 2 and f"params file 'params.yaml' not found in {work}" in missing.stderr
    (work / "params.yaml").write_text("train_dit: {}\n")
    _script(fake_bin[0] / "torchrun", 'echo "torchrun $PWD $PYTHONPATH $*" >> "$LAUNCH_LOG"')
    proc = _run(
        "torchrun_multinode.sh",
        "train_dit",
        fake=fake_bin,
        MOSA_WORKDIR=str(work),
        PYTHONPATH="/opt/extra",
        **MULTINODE,
    )
    assert proc.returncode == 0, proc.stderr
    assert fake_bin[1].read_text().splitlines() == [
        f"torchrun {work} {REPO}:/opt/extra --nnodes 2 --node_rank 1 --nproc_per_node 1 --master_addr node-a "
        "--master_port 29500 -m flows.train_dit --params params.yaml"
    ]
    assert "node 1 of 2" in proc.stderr and "PREFECT_API_URL is unset" in proc.stderr


def test_deepspeed_dry_run_reads_the_hostfile(fake_bin):
    proc = _run(
        "deepspeed_multinode.sh",
        "train_dit",
        fake=fake_bin,
        DRY_RUN="1",
        HOSTFILE="infra/launch/hostfile.example",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        *("deepspeed", "--hostfile", "infra/launch/hostfile.example", "--num_nodes", "2", "--num_gpus", "8"),
        *("--master_addr", "gpu-node-01", "--master_port", "29500", "--launcher", "pdsh"),
        *("--no_local_rank", "--module", "flows.train_dit", "--params", "params.yaml"),
    ]


def test_deepspeed_validates_hostfile_and_node_count(fake_bin, tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# nodes\nalpha slots=4\nbeta slots=2  # smaller node\n")
    ok = _run("deepspeed_multinode.sh", "pretrain_motion", fake=fake_bin, DRY_RUN="1", HOSTFILE=str(hostfile))
    assert "--num_nodes 2 --num_gpus 2 --master_addr alpha" in ok.stdout, ok.stderr
    too_many = _run(
        "deepspeed_multinode.sh",
        "train_dit",
        fake=fake_bin,
        DRY_RUN="1",
        HOSTFILE=str(hostfile),
        NUM_NODES="3",
    )
    assert too_many.returncode == 2 and f"NUM_NODES=3 but {hostfile} lists only 2 hosts" in too_many.stderr
    hostfile.write_text("alpha slots=4\nbeta gpus=2\n")
    bad = _run("deepspeed_multinode.sh", "train_dit", fake=fake_bin, DRY_RUN="1", HOSTFILE=str(hostfile))
    assert bad.returncode == 2 and "bad hostfile line" in bad.stderr and "'beta gpus=2'" in bad.stderr
    missing = _run("deepspeed_multinode.sh", "train_dit", fake=fake_bin, HOSTFILE=str(tmp_path / "nope"))
    assert missing.returncode == 2 and "copy infra/launch/hostfile.example" in missing.stderr
    assert not fake_bin[1].exists()


def test_hostfile_example_format():
    hosts = [
        line
        for line in (LAUNCH / "hostfile.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert hosts and all(re.fullmatch(r"[A-Za-z0-9._-]+ slots=[1-9]\d*", h) for h in hosts)


@pytest.mark.parametrize(
    ("script", "stage", "gpus"),
    [("slurm_train_dit.sbatch", "train_dit", "4"), ("slurm_pretrain_motion.sbatch", "pretrain_motion", "2")],
)
def test_slurm_job_starts_one_torchrun_per_node(script, stage, gpus, fake_bin, tmp_path):
    repo = tmp_path / "repo"
    (repo / "flows").mkdir(parents=True)
    (repo / "flows" / f"{stage}.py").write_text("")
    sbatch = (LAUNCH / script).read_text()
    assert f"#SBATCH --gpus-per-node={gpus}" in sbatch and "#SBATCH --nodes=" in sbatch
    proc = _run(
        script,
        fake=fake_bin,
        SLURM_JOB_ID="42",
        SLURM_NNODES="2",
        SLURM_JOB_NODELIST="node-[a-b]",
        SLURM_GPUS_ON_NODE=gpus,
        MOSA_REPO=str(repo),
        MOSA_VENV=str(tmp_path / "no-venv"),
    )
    assert proc.returncode == 0, proc.stderr
    calls = fake_bin[1].read_text().splitlines()
    assert calls[0].startswith("srun --nodes 2 --ntasks-per-node 1 --kill-on-bad-exit=1 bash -c ")
    common = (
        f"--nproc_per_node {gpus} --rdzv_id 42 --rdzv_backend c10d --rdzv_endpoint node-a:29500 "
        f"-m flows.{stage} --params params.yaml"
    )
    assert calls[1:] == [
        f"torchrun {repo} --nnodes 2 --node_rank 0 {common}",
        f"torchrun {repo} --nnodes 2 --node_rank 1 {common}",
    ]


def test_slurm_job_refuses_to_run_outside_an_allocation(fake_bin):
    proc = _run("slurm_train_dit.sbatch", "train_dit", fake=fake_bin, MOSA_REPO=str(REPO))
    assert proc.returncode == 2 and "not inside a SLURM allocation" in proc.stderr
    assert not fake_bin[1].exists()
