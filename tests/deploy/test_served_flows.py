"""The deployments served against a real Prefect server on loopback, triggered through its API."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.compute as pc
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from typer.testing import CliRunner

from recsys_peft.cli import app
from recsys_peft.config import PipelineConfig
from recsys_peft.config_file import to_yaml
from recsys_peft.registry.store import Registry
from recsys_peft.retraining.history import load_run_records
from recsys_peft.scoring.output import read_latest, read_latest_run
from tests.retraining.configs import tiny_retrain_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# Schedules that do not fire while the test runs; the test triggers every run itself.
YEARLY = {"ingest": "0 0 1 1 *", "segments": "0 0 1 1 *", "retrain": "0 0 1 1 *", "score": "0 0 1 1 *"}
STARTUP_SECONDS = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, service: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{service} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{service} not ready after {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def served_config(raw_dir: Path, work_dir: Path, learning_rate: float = 5e-3) -> PipelineConfig:
    return tiny_retrain_config(raw_dir, work_dir, learning_rate, schedules=dict(YEARLY), promotion_margin=0.01)


@pytest.fixture(scope="module")
def served(synthetic_log, tmp_path_factory):
    """Start a Prefect server and serve the deployments; yield the API URL and the config."""
    folder = tmp_path_factory.mktemp("served")
    raw_dir = folder / "raw"
    shutil.copytree(synthetic_log.folder, raw_dir)
    config = served_config(raw_dir, folder / "work")
    config_path = folder / "config.yaml"
    config_path.write_text(to_yaml(config), encoding="utf-8")

    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(folder / "prefect"), "PREFECT_API_URL": url,
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{folder / 'prefect.db'}",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "INFO", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    server_log, serve_log = folder / "server.log", folder / "serve.log"
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port), "--no-ui"], cwd=ROOT, env=env,
                              stdout=server_log.open("w"), stderr=subprocess.STDOUT)
    runner = None
    try:
        wait_until(lambda: healthy(url), "prefect server", server, server_log)
        runner = subprocess.Popen([sys.executable, "-m", "flows.deploy", "--config", str(config_path)],
                                  cwd=ROOT, env=env, stdout=serve_log.open("w"), stderr=subprocess.STDOUT)
        wait_until(lambda: "Your deployments are being served" in serve_log.read_text() or
                   "Starting webserver" in serve_log.read_text() or _deployment_count(url) == 4,
                   "serve", runner, serve_log)
        with temporary_settings({PREFECT_API_URL: url}):
            yield url, config, config_path
    finally:
        for process in (runner, server):
            if process is not None:
                stop(process)


def _deployment_count(url: str) -> int:
    try:
        with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
            return len(client.read_deployments())
    except Exception:  # the API is not ready yet
        return 0


def trigger(name: str, parameters: dict | None = None):
    flow_run = run_deployment(name, parameters=parameters or {}, timeout=600, poll_interval=1)
    assert flow_run.state is not None and flow_run.state.is_final(), flow_run.state
    return flow_run


def test_deployments_have_cron_schedules(served):
    url, config, _ = served

    with get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments()}

    assert sorted(deployments) == ["ingest", "retrain", "score", "segments"]
    for name, deployment in deployments.items():
        assert [s.schedule.cron for s in deployment.schedules] == [YEARLY[name]], name
        assert deployment.parameters["config"]["work_dir"] == config.work_dir
    assert deployments["retrain"].parameters["base_due"] is True


def test_retrain_through_api_promotes(served):
    url, config, _ = served

    flow_run = trigger("recsys-peft-retrain/retrain")

    assert flow_run.state.name == "Promoted", flow_run.state.message
    record = load_run_records(config.work_dir)[-1]
    assert record["flow_run_id"] == str(flow_run.id)
    assert record["outcome"] == "promoted"
    assert record["promotion"]["reason"] == "no promoted release to compare against"
    assert Registry(Path(config.work_dir) / "registry").current().release_id == record["release_id"]


def test_worse_candidate_through_api_kept(served):
    url, config, _ = served
    weak = served_config(Path(config.raw_dir), Path(config.work_dir), learning_rate=1e-6)
    before = Registry(Path(config.work_dir) / "registry").history()

    flow_run = trigger("recsys-peft-retrain/retrain", {"config": weak.to_dict()})

    assert flow_run.state.name == "Kept", flow_run.state.message
    assert flow_run.state.message.startswith("kept the promoted release: candidate ndcg@10")
    record = load_run_records(config.work_dir)[-1]
    assert record["outcome"] == "kept"
    assert record["holdout_metrics"]["candidate"]["ndcg@10"] < record["holdout_metrics"]["promoted"]["ndcg@10"]
    assert Registry(Path(config.work_dir) / "registry").history() == before


def test_score_uses_promoted_release(served, synthetic_log):
    url, config, _ = served
    current = Registry(Path(config.work_dir) / "registry").current()

    flow_run = trigger("recsys-peft-score-promoted/score")

    assert flow_run.state.is_completed(), flow_run.state.message
    output = Path(config.work_dir) / "scheduled_recommendations"
    table = read_latest_run(output)
    manifest = (Path(config.work_dir) / "exports" / current.release_id / "manifest.json")
    assert manifest.is_file()
    assert read_latest(output)["model_version"] in table.column("model_version").to_pylist()
    assert table.num_rows == synthetic_log.num_users * config.top_k
    assert pc.count_distinct(pc.binary_join_element_wise(
        table["user_id"], pc.cast(table["rank"], "string"), "/")).as_py() == table.num_rows


def test_deploy_command_registers_work_pool(served):
    # Last in this module: it replaces the served "score" deployment with one of the work pool.
    url, config, config_path = served
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="test-pool", type="process"))

    result = CliRunner().invoke(app, ["deploy", "--work-pool", "test-pool", "--config", str(config_path),
                                      "--only", "score"])

    assert result.exit_code == 0, result.output
    assert "deployed 1 deployments to work pool test-pool" in result.output
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("recsys-peft-score-promoted/score")
    assert deployment.work_pool_name == "test-pool"
    assert deployment.entrypoint == "flows/score_promoted.py:score_promoted_flow"
    assert [s.schedule.cron for s in deployment.schedules] == [YEARLY["score"]]
