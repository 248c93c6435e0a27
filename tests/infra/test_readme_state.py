"""The README's "Current state" figures agree with the git-tracked metrics files.

`infra/readme/current_state.py --check` compares the block between the current-state markers with
what it generates from `metrics/*.json`; these tests run it on the repository and on altered copies
(a changed figure, no markers, a changed metric, stale ablation reports) to show it catches them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "infra" / "readme" / "current_state.py"
BEGIN = "<!-- current-state:begin -->"
END = "<!-- current-state:end -->"


def _run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=60
    )


def _block(text: str) -> str:
    return text[text.index(BEGIN) : text.index(END) + len(END)]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the README and the git-tracked metrics files (what a clean clone holds)."""
    tracked = subprocess.run(
        ["git", "ls-files", "metrics"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked, "no git-tracked metrics files"
    for rel in tracked:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, tmp_path / rel)
    shutil.copy2(REPO / "README.md", tmp_path / "README.md")
    return tmp_path


def test_readme_matches_git_tracked_metrics(checkout: Path) -> None:
    """The repository's README block is exactly what the tracked metrics generate."""
    proc = _run("--check", "--root", checkout)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_repository_readme_check_passes() -> None:
    """Same check in place (the working tree, including any local reports/ablate)."""
    proc = _run("--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_one_changed_figure_fails_with_a_diff(checkout: Path) -> None:
    readme = checkout / "README.md"
    text = readme.read_text(encoding="utf-8")
    block = _block(text)
    row = next(line for line in block.splitlines() if line.startswith("| pretrain_motion | `fid` |"))
    value = row.split(" | ")[2]
    changed = row.replace(f" | {value} | ", f" | {float(value) + 0.1:.3f} | ", 1)
    assert changed != row
    readme.write_text(text.replace(row, changed), encoding="utf-8")
    proc = _run("--check", "--root", checkout)
    assert proc.returncode == 1
    assert f"-{changed}" in proc.stdout and f"+{row}" in proc.stdout, proc.stdout
    assert "make readme" in proc.stdout


def test_readme_without_markers_fails(checkout: Path) -> None:
    readme = checkout / "README.md"
    text = readme.read_text(encoding="utf-8")
    readme.write_text(text.replace(BEGIN, "").replace(END, ""), encoding="utf-8")
    proc = _run("--check", "--root", checkout)
    assert proc.returncode == 1
    assert "current-state:begin" in proc.stderr


def test_changed_metric_fails_check_and_rewrite_fixes_it(checkout: Path) -> None:
    """A rerun that changes a metric makes the README stale; the rewrite touches only the block."""
    path = checkout / "metrics" / "train_dit.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["mosa_skeleton_mask_iou"] = 0.4321
    path.write_text(json.dumps(data), encoding="utf-8")
    before = (checkout / "README.md").read_text(encoding="utf-8")
    assert _run("--check", "--root", checkout).returncode == 1

    proc = _run("--root", checkout)
    assert proc.returncode == 0, proc.stderr
    after = (checkout / "README.md").read_text(encoding="utf-8")
    assert "| train_dit | `mosa_skeleton_mask_iou` | 0.432 |" in after
    head, tail = before.split(BEGIN)[0], before.split(END)[1]
    assert after.startswith(head) and after.endswith(tail)
    assert _run("--check", "--root", checkout).returncode == 0


def test_missing_metric_names_file_and_key(checkout: Path) -> None:
    path = checkout / "metrics" / "pretrain_motion.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["gt_fid"]
    path.write_text(json.dumps(data), encoding="utf-8")
    proc = _run("--check", "--root", checkout)
    assert proc.returncode == 2
    assert "metrics/pretrain_motion.json" in proc.stderr and "'gt_fid'" in proc.stderr


def test_ablation_reports_are_summarised_into_tracked_metrics(checkout: Path) -> None:
    """reports/ablate (DVC, untracked) -> metrics/ablate.json (tracked) -> rows in the block."""
    assert "metrics/ablate.json" in _block((checkout / "README.md").read_text(encoding="utf-8"))
    for variant, iou in (("mosa_full", 0.025), ("hadc_off", 0.126)):
        folder = checkout / "reports" / "ablate" / variant
        folder.mkdir(parents=True)
        report = {
            "variant": variant,
            "steps": 100,
            "mosa_skeleton_mask_iou": iou,
            "base_skeleton_mask_iou": 0.022,
            "mosa_person_region_l1": 0.213,
        }
        (folder / "metrics.json").write_text(json.dumps(report), encoding="utf-8")
    proc = _run("--check", "--root", checkout)
    assert proc.returncode == 1 and "metrics/ablate.json does not match" in proc.stdout

    assert _run("--root", checkout).returncode == 0
    summary = json.loads((checkout / "metrics" / "ablate.json").read_text(encoding="utf-8"))
    assert summary["hadc_off"]["mosa_skeleton_mask_iou"] == 0.126
    block = _block((checkout / "README.md").read_text(encoding="utf-8"))
    assert "| ablate@hadc_off | `mosa_skeleton_mask_iou` | 0.126 | base alone 0.0220;" in block
    assert "| ablate@mosa_full | `mosa_skeleton_mask_iou` | 0.0250 |" in block
    assert _run("--check", "--root", checkout).returncode == 0

    # a later ablation rerun leaves the tracked summary stale until `make readme`
    report_path = checkout / "reports" / "ablate" / "hadc_off" / "metrics.json"
    report = json.loads(report_path.read_text(encoding="utf-8"))
    report["mosa_skeleton_mask_iou"] = 0.2
    report_path.write_text(json.dumps(report), encoding="utf-8")
    assert _run("--check", "--root", checkout).returncode == 1


def test_hand_written_current_state_text_has_no_figures() -> None:
    """Outside the generated block, the 'Current state' paragraph states no measured decimals."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("Current state (honest)")
    prose = text[start : text.index(BEGIN)] + text[text.index(END) : text.index("\n## ", start)]
    assert re.findall(r"\d+\.\d+", prose) == []
