"""The UIs as a person sees them: headless Chromium opens a real Prefect server's flow-run page and a
real MLflow server's registered-model page, checks what they show, and saves screenshots.

Needs Debian's Chromium at /usr/bin/chromium (``infra/browser/install_chromium.sh``) and the
``playwright`` Python package, which drives that browser (no Playwright browser download).
Screenshots go to ``reports/browser/`` (or ``$MOSA_BROWSER_REPORTS``).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
BIN = Path(sys.executable).parent
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
FLOW_RUN_NAME = "ui-check-run"
MODEL = "mosa-dit"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} not found: install it with `bash infra/browser/install_chromium.sh`",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(extra)
    return env


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:  # its own process group: _stop ends the server and its workers
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_healthy(proc: subprocess.Popen, health: str, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"{proc.args[:2]} exited:\n{log.read_text()[-3000:]}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(health, timeout=2).status_code == 200:
                return
        assert time.monotonic() < deadline, f"{health} not healthy:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _populate_registry(uri: str) -> None:
    """v1 becomes champion through the gate; v2, worse, stays the candidate."""
    from components.registry.config import GateConfig, GateRule
    from components.registry.promote import client_for, promote

    client, _ = client_for(uri)
    client.create_registered_model(MODEL, description="browser test model")
    gate = GateConfig(rules=[GateRule(metric="score", direction="higher")])
    for version, score in (("1", 0.7), ("2", 0.6)):
        client.create_model_version(MODEL, source="s3://bucket/model", tags={"metric.score": str(score)})
        client.set_registered_model_alias(MODEL, "candidate", version)
        promote(MODEL, version, gate, tracking_uri=uri)


TINY_FLOW = textwrap.dedent(
    f"""
    from prefect import flow, task

    @task
    def double(x: int) -> int:
        return 2 * x

    @flow(name="browser-check", flow_run_name="{FLOW_RUN_NAME}")
    def browser_check() -> str:
        from prefect.runtime import flow_run
        assert double(21) == 42
        return flow_run.id

    print("FLOW_RUN_ID", browser_check())
    """
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A real ``mlflow server`` with a registered model and a real ``prefect server start`` with one
    completed flow run, both on free loopback ports with their own stores."""
    tmp = tmp_path_factory.mktemp("ui")
    db = f"sqlite:///{tmp / 'mlflow.db'}"
    _populate_registry(db)
    m_port, p_port = _free_port(), _free_port()
    mlflow_url, prefect_url = f"http://127.0.0.1:{m_port}", f"http://127.0.0.1:{p_port}"
    mlflow_cmd = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        db,
        "--default-artifact-root",
        (tmp / "artifacts").as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(m_port),
        "--workers",
        "1",
    ]
    home = tmp / "prefect-home"
    prefect_env = _env(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
        PREFECT_UI_ENABLED="true",
        PREFECT_UI_API_URL=f"{prefect_url}/api",
    )
    prefect_cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(p_port)]
    with contextlib.ExitStack() as stack:  # both servers boot at the same time
        m_log, p_log = tmp / "mlflow.log", tmp / "prefect.log"
        m_proc = _start(mlflow_cmd, _env(), m_log)
        stack.callback(_stop, m_proc)
        p_proc = _start(prefect_cmd, prefect_env, p_log)
        stack.callback(_stop, p_proc)
        _wait_healthy(m_proc, f"{mlflow_url}/health", m_log)
        _wait_healthy(p_proc, f"{prefect_url}/api/health", p_log)
        run = subprocess.run(
            [sys.executable, "-c", TINY_FLOW],
            env={**prefect_env, "PREFECT_API_URL": f"{prefect_url}/api", "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=180,
            cwd=tmp,
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        flow_run_id = next(
            line.split()[1] for line in run.stdout.splitlines() if line.startswith("FLOW_RUN_ID")
        )
        yield {"mlflow": mlflow_url, "prefect": prefect_url, "flow_run_id": flow_run_id}


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


def test_prefect_flow_run_page_shows_the_completed_run(servers, browser):
    run_id = servers["flow_run_id"]
    api = httpx.get(f"{servers['prefect']}/api/flow_runs/{run_id}", timeout=10).json()
    assert (api["name"], api["state_type"]) == (FLOW_RUN_NAME, "COMPLETED")
    page = browser.new_page()
    try:
        page.goto(f"{servers['prefect']}/runs/flow-run/{run_id}", wait_until="domcontentloaded")
        page.get_by_text(FLOW_RUN_NAME).first.wait_for(timeout=60_000)
        page.get_by_text("Completed", exact=True).first.wait_for(timeout=60_000)
        page.wait_for_timeout(1_000)  # let the timeline and logs finish drawing for the screenshot
        text = page.inner_text("body")
        shot = _shot(page, "prefect-flow-run.png")
    finally:
        page.close()
    assert FLOW_RUN_NAME in text and "Completed" in text
    assert "browser-check" in text  # the flow's name in the breadcrumb
    assert shot.stat().st_size > 10_000


def test_mlflow_model_page_shows_the_model_and_champion_alias(servers, browser):
    page = browser.new_page()
    try:
        page.goto(f"{servers['mlflow']}/#/models/{MODEL}", wait_until="domcontentloaded")
        page.get_by_text("champion").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1_000)
        text = page.inner_text("body")
        rows = {v: page.get_by_role("row").filter(has_text=f"Version {v}").inner_text() for v in (1, 2)}
        shot = _shot(page, "mlflow-registered-model.png")
    finally:
        page.close()
    assert MODEL in text
    # the gate made v1 champion and left the worse v2 as candidate
    chips = {v: set(re.findall(r"@\s+([\w-]+)", row)) for v, row in rows.items()}  # alias chips: "@ name"
    assert chips == {1: {"champion"}, 2: {"candidate"}}, rows
    assert shot.stat().st_size > 10_000
