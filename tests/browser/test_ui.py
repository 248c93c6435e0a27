"""Promotion from the UIs, as a person does it, on the real nightly run of the team stack (issue 19):
headless Chromium opens the Prefect UI of the stack, finds the ``pipeline/nightly`` flow run that the
worker executed (session fixture ``team_nightly``, tests/helpers/team_run.py, shared with
tests/infra/test_team_nightly.py), sees its ``repro-<stage>`` task runs and the stages' summary
artifacts, starts the ``promote`` deployment from the deployment's "Run" -> "Custom run" form with the
model name and the registered version, and once the worker has run it, opens the MLflow UI where that
version now carries ``champion`` and its lineage tags (git commit, dvc.lock hashes).

Needs Debian's Chromium at /usr/bin/chromium (``infra/browser/install_chromium.sh``) and the
``playwright`` Python package, which drives that browser (no Playwright browser download), and
PostgreSQL for the stack (``infra/services/install_postgres.sh``; both are part of ``make install``).
Screenshots go to ``reports/browser/`` (or ``$MOSA_BROWSER_REPORTS``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers.team_run import BIN, MODEL, client_env, wait_final, worker_log

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("MOSA_BROWSER_REPORTS", REPO / "reports" / "browser"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UI_RUN_NAME = "promote-from-the-ui"
WORKER_LINE = "Worker 'mosa-team-worker' submitting flow run"
WAIT_MS = 60_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} not found: install it with `bash infra/browser/install_chromium.sh`",
    ),
    pytest.mark.timeout(3600),  # the first test waits for the nightly run (team_nightly)
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Debian's Chromium, headless, with a fresh profile, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def _shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def _ui(info: dict) -> str:
    return info["client"]["PREFECT_API_URL"].removesuffix("/api")


def _stages(info: dict) -> list[str]:
    out = subprocess.run(
        [str(BIN / "dvc"), "stage", "list", "--name-only"],
        cwd=info["repo"], env=client_env(info), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [line.strip() for line in out.splitlines() if line.strip()]


def _summary_key(stage: str) -> str:
    """The Prefect artifact key of a stage's summary (flows/stage.py; ablate@v runs as ablate-v)."""
    name, _, variant = stage.partition("@")
    return f"{name}-{variant}-summary".replace("_", "-") if variant else f"{name.replace('_', '-')}-summary"


def _tab(page, name: str) -> None:
    """Open a tab of a Prefect UI page (Logs, Task Runs, Artifacts, ...)."""
    tab = page.get_by_role("tab", name=name, exact=True)
    (tab if tab.count() else page.get_by_text(name, exact=True)).first.click()


def test_prefect_ui_shows_the_nightly_run_its_stage_tasks_and_summaries(team_nightly, browser):
    info = team_nightly
    run, expanded = info["flow_run"], _stages(info)
    stages = list(yaml.safe_load((info["repo"] / "dvc.yaml").read_text())["stages"])  # one task each
    page = browser.new_page()
    try:
        page.goto(f"{_ui(info)}/runs/flow-run/{run['id']}", wait_until="domcontentloaded")
        page.get_by_text(run["name"]).first.wait_for(timeout=WAIT_MS)
        page.get_by_text("Completed", exact=True).first.wait_for(timeout=WAIT_MS)
        for text in ("pipeline", "nightly", "mosa-process"):  # flow, deployment, work pool
            page.get_by_text(text, exact=True).first.wait_for(timeout=WAIT_MS)
        page.get_by_text(WORKER_LINE).first.wait_for(timeout=WAIT_MS)  # the Logs tab, first lines
        head = page.inner_text("body")
        _tab(page, "Task Runs")
        page.get_by_text(f"repro-{stages[-1]}").first.wait_for(timeout=WAIT_MS)
        page.wait_for_timeout(1_000)
        tasks_text = page.inner_text("body")
        _shot(page, "prefect-nightly-task-runs.png")
        _tab(page, "Artifacts")
        page.get_by_text("pipeline-summary").first.wait_for(timeout=WAIT_MS)
        _shot(page, "prefect-nightly-artifacts.png")

        page.goto(f"{_ui(info)}/artifacts", wait_until="domcontentloaded")
        page.get_by_text(_summary_key(expanded[-1])).first.wait_for(timeout=WAIT_MS)
        page.wait_for_timeout(1_000)
        artifacts_text = page.inner_text("body")
        _shot(page, "prefect-artifacts.png")

        page.goto(f"{_ui(info)}/artifacts/key/{_summary_key('train_dit')}", wait_until="domcontentloaded")
        page.locator("a[href*='/artifacts/artifact/']").first.click()  # its latest version
        page.get_by_text("loss_total").first.wait_for(timeout=WAIT_MS)  # the summary's metric table
        summary_text = page.inner_text("body")
        _shot(page, "prefect-train-dit-summary.png")
    finally:
        page.close()
    assert "pipeline" in head and "nightly" in head  # the flow and the deployment it ran from
    assert f"{WORKER_LINE} '{run['id']}'" in head  # executed by the stack's worker
    for stage in stages:
        assert f"repro-{stage}" in tasks_text, stage
    for stage in expanded:  # ablate@track_static's summary: ablate-track-static-summary
        assert _summary_key(stage) in artifacts_text, stage
    assert len(re.findall(r"\bCompleted\b", tasks_text)) >= len(stages)
    steps = json.loads((info["repo"] / "metrics" / "train_dit.json").read_text())["steps"]
    assert re.search(rf"steps\s+{steps}\b", summary_text), summary_text[:2000]


def _aliases(mlflow_url: str) -> dict[str, str]:
    got = httpx.get(f"{mlflow_url}/api/2.0/mlflow/registered-models/get", params={"name": MODEL}, timeout=30)
    got.raise_for_status()
    return {a["alias"]: a["version"] for a in got.json()["registered_model"].get("aliases", [])}


def _params_for_the_ui_promotion(info: dict, folder: Path) -> tuple[Path, Path]:
    """The copy's ``register`` section with the promotion log moved out of the DVC workspace (the
    copy's ``reports/register/promotions.jsonl`` is a pipeline output) and the gate's first-champion
    rule on (the nightly copy had it off, so v1 is waiting for this promotion)."""
    register = yaml.safe_load((info["repo"] / "params.yaml").read_text())["register"]
    log = folder / "promotions.jsonl"
    register.update(promotions=str(log), reports=str(folder / "register"))
    register["gate"]["promote_first"] = True
    params = folder / "params.yaml"
    params.write_text(yaml.safe_dump({"register": register}, sort_keys=False))
    return params, log


def _field(page, label: str):
    """The form field (Prefect UI's ``p-label`` block) whose label reads ``label``."""
    return page.locator("div.p-label").filter(has=page.get_by_text(label, exact=True)).last


def _created_run(api: httpx.Client, deployment_id: str, timeout: float = 60) -> str:
    """The id of the flow run the form submitted (the UI returns to the deployment page)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = api.post(
            "/flow_runs/filter",
            json={"deployments": {"id": {"any_": [deployment_id]}},
                  "flow_runs": {"name": {"any_": [UI_RUN_NAME]}}, "offset": 0, "limit": 10},
        ).json()  # fmt: skip
        if runs:
            assert len(runs) == 1, runs
            return runs[0]["id"]
        assert time.monotonic() < deadline, f"no flow run {UI_RUN_NAME!r} after submitting the form"
        time.sleep(1)


def test_promote_from_the_prefect_ui_then_mlflow_shows_champion_and_lineage(team_nightly, browser, tmp_path):
    info = team_nightly
    mlflow_url = info["client"]["MLFLOW_TRACKING_URI"]
    assert _aliases(mlflow_url) == {"candidate": "1"}  # the nightly run registered v1, no champion yet
    params, log = _params_for_the_ui_promotion(info, tmp_path)
    dep = httpx.get(
        f"{info['client']['PREFECT_API_URL']}/deployments/name/promote/promote", timeout=30
    ).json()

    page = browser.new_page()
    try:  # Deployments -> promote -> Run -> Custom run: the form Prefect draws from the flow's signature
        page.goto(f"{_ui(info)}/deployments", wait_until="domcontentloaded")
        page.get_by_role("link", name="promote", exact=True).first.click()
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Custom run", exact=True).click()
        page.wait_for_url(re.compile(r"/run(\?|$)"), timeout=WAIT_MS)
        page.get_by_text("Parameters", exact=True).first.wait_for(timeout=WAIT_MS)
        _field(page, "Run Name").locator("input").fill(UI_RUN_NAME)
        _field(page, "version").locator("input[type=number]").fill("1")
        model_field = _field(page, "model_name (Optional)")
        model_field.get_by_role("button", name="str", exact=True).click()  # the type: str, not None
        model_field.locator("input[type=text], textarea").first.fill(MODEL)
        _field(page, "params_path (Optional)").locator("textarea, input").first.fill(str(params))
        _shot(page, "prefect-promote-custom-run.png")
        page.get_by_role("button", name="Submit", exact=True).click()
        with httpx.Client(base_url=info["client"]["PREFECT_API_URL"], timeout=30) as api:
            run_id = _created_run(api, dep["id"])
            run = wait_final(api, run_id, 600, info["state"])
        assert run["state_type"] == "COMPLETED", f"{run['state']['message']}\n{worker_log(info['state'])}"
        page.goto(f"{_ui(info)}/runs/flow-run/{run_id}", wait_until="domcontentloaded")
        page.get_by_text(UI_RUN_NAME).first.wait_for(timeout=WAIT_MS)
        page.get_by_text("Completed", exact=True).first.wait_for(timeout=WAIT_MS)
        _shot(page, "prefect-promote-run.png")

        page.goto(f"{mlflow_url}/#/models/{MODEL}", wait_until="domcontentloaded")
        page.get_by_text("champion").first.wait_for(timeout=WAIT_MS)
        page.wait_for_timeout(1_000)
        row = page.get_by_role("row").filter(has_text="Version 1").inner_text()
        _shot(page, "mlflow-registered-model.png")

        page.goto(f"{mlflow_url}/#/models/{MODEL}/versions/1", wait_until="domcontentloaded")
        page.get_by_text("lineage.git_commit").first.wait_for(timeout=WAIT_MS)
        page.wait_for_timeout(1_000)
        version_text = page.inner_text("body")
        page.get_by_text("lineage.git_commit").first.scroll_into_view_if_needed()  # in the screenshot
        _shot(page, "mlflow-model-version.png")
    finally:
        page.close()

    assert (run["name"], run["deployment_id"]) == (UI_RUN_NAME, dep["id"])
    assert {k: run["parameters"].get(k) for k in ("version", "model_name", "params_path")} == {
        "version": 1,
        "model_name": MODEL,
        "params_path": str(params),
    }
    # the promotion log (rebuilt from the registry's records): the nightly gate's refusal, then ours
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert (records[0]["decision"], records[0]["champion_after"]) == ("rejected", None)
    last = records[-1]
    assert (last["version"], last["decision"], last["champion_after"]) == ("1", "manual", "1")
    assert _aliases(mlflow_url) == {"candidate": "1", "champion": "1"}
    chips = set(re.findall(r"@\s+([\w-]+)", row))  # alias chips read "@ name"
    assert "champion" in chips, row
    tags = {  # the lineage the register stage tagged, as the version page shows it
        t["key"]: t["value"]
        for t in httpx.get(
            f"{mlflow_url}/api/2.0/mlflow/model-versions/get",
            params={"name": MODEL, "version": "1"},
            timeout=30,
        ).json()["model_version"]["tags"]
    }
    assert tags["lineage.git_commit"].removesuffix("-dirty") == info["head"]
    for key in ("lineage.git_commit", "lineage.dvc_lock_md5", "lineage.dvc.train_dit.outs"):
        assert key in version_text, key
    assert tags["lineage.git_commit"] in version_text and tags["lineage.dvc_lock_md5"] in version_text
