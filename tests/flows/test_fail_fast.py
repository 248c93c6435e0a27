"""A stage flow validates its params before torch and the models load: a bad params.yaml fails in
seconds with exit 2, and the heavy imports (the flows' ``# lazy:`` reason) never happen."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STAGES = ("pretrain_motion", "pretrain_base", "train_dit", "evaluate", "register")

PROBE = """
import importlib, json, sys
from flows.stage import stage_main
out = {}
for stage in sys.argv[2:]:
    flow = getattr(importlib.import_module(f"flows.{stage}"), stage)
    rc = stage_main(flow, ["--params", sys.argv[1]])
    out[stage] = {"rc": rc, "torch": "torch" in sys.modules}
print("RESULT " + json.dumps(out))
"""


def test_a_bad_params_file_fails_before_torch_loads(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("".join(f"{stage}:\n  no_such_key: 1\n" for stage in STAGES))
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(bad), *STAGES],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    for stage in STAGES:
        assert result[stage]["rc"] == 2, (stage, proc.stderr[-2000:])
        assert not result[stage]["torch"], f"{stage} imported torch before validating its params"
        assert f"{stage}.no_such_key: unknown key" in proc.stderr  # the message names the bad key
