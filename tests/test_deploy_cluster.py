"""Deployment on a real Ray cluster: a token-protected head started with the `ray` CLI.

One head serves the whole module. It is started in a session of its own (``setsid``),
with its own temp dir and ports, so it cannot be mistaken for the in-process Ray of other
tests (``ray.init()`` looks for ``/tmp/ray/ray_current_cluster``, which this head never
writes) and so it can be stopped without ``ray stop``: that command kills every Ray process
on the machine, other test sessions' included. Teardown ends exactly the processes this
head started.

Every Ray client here runs with HOME pointing at an empty folder, so a token in the user's
own ``~/.ray/auth_token`` can neither help nor hurt.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")
ENGRAM = str(VENV_BIN / "engram")
HEAD_START_TIMEOUT_S = 120
RUN_TIMEOUT_S = 240
CLIENT_VARIABLES = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@dataclass
class Head:
    gcs_address: str
    dashboard_url: str
    token: str
    temp_dir: Path
    home: Path

    def env(self, token: str | None = "cluster") -> dict[str, str]:
        """Environment for a Ray client: the cluster's token, another token, or none."""
        env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARIABLES}
        env["HOME"] = str(self.home)
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        if token is not None:
            env["RAY_AUTH_MODE"] = "token"
            env["RAY_AUTH_TOKEN"] = self.token if token == "cluster" else token
        return env

    def api(self, path: str) -> object:
        """GET a dashboard REST endpoint with the cluster's token."""
        request = urllib.request.Request(
            self.dashboard_url + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _parent_pids() -> dict[int, int]:
    """pid -> parent pid for every process, read from /proc (Linux)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces; the fields after its ")" are plain.
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _processes_of(root_pid: int) -> set[int]:
    """The head's process tree plus anything left in its session (reparented orphans)."""
    parents = _parent_pids()
    found = {root_pid} if root_pid in parents else set()
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    for pid in parents:
        try:
            if os.getsid(pid) == root_pid:
                found.add(pid)
        except OSError:
            continue
    return found


def _signal_all(pids: set[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _stop_head(process: subprocess.Popen) -> None:
    """End the head's processes (and only those): SIGTERM, then SIGKILL what is left.

    Ray drains for up to 30 s on SIGTERM; a test cluster holds nothing worth waiting for.
    """
    # Collect while the tree is intact: job entrypoints run in sessions of their own and
    # would be orphaned (and unfindable by parentage) once their parents die.
    pids = _processes_of(process.pid)
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    _signal_all(pids | _processes_of(process.pid), signal.SIGKILL)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def ray_head():
    # A short path: Ray's unix sockets live under the temp dir and must stay under ~107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="engram-ray-"))
    home = temp_dir / "home"
    home.mkdir()
    gcs_port, dashboard_port, client_port, agent_port, agent_grpc_port, env_agent_port, metrics_port = _free_ports(7)
    head = Head(
        gcs_address=f"127.0.0.1:{gcs_port}",
        dashboard_url=f"http://127.0.0.1:{dashboard_port}",
        token=secrets.token_hex(32),
        temp_dir=temp_dir,
        home=home,
    )
    log_path = temp_dir / "head.log"
    command = [
        RAY, "start", "--head", "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs_port}",
        "--num-cpus=2",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--ray-client-server-port={client_port}",
        f"--dashboard-agent-listen-port={agent_port}",
        f"--dashboard-agent-grpc-port={agent_grpc_port}",
        f"--runtime-env-agent-port={env_agent_port}",
        f"--metrics-export-port={metrics_port}",
        f"--temp-dir={temp_dir / 'ray'}",
        "--disable-usage-stats",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=head.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_until_jobs_api_answers(head, process, log_path)
        yield head
    finally:
        _stop_head(process)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_until_jobs_api_answers(head: Head, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ray start --head exited with {process.returncode}:\n{_tail(log_path.read_text())}")
        try:
            head.api("/api/jobs/")
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            time.sleep(1)
    pytest.fail(f"the Ray head's job API did not answer in {HEAD_START_TIMEOUT_S} s:\n{_tail(log_path.read_text())}")


def _run(command: list[str], env: dict[str, str], timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
    )


def _assert_run_folder(run_dir: Path, output: str) -> None:
    assert list(run_dir.glob("events.out.tfevents.*")), f"no TensorBoard events in {run_dir}\n{_tail(output)}"
    assert list((run_dir / "checkpoints").glob("ckpt-*.pt")), f"no checkpoint in {run_dir}\n{_tail(output)}"
    assert (run_dir / "config.yaml").is_file()


def test_ray_job_submit_trains_the_smoke_config(ray_head: Head, tmp_path: Path):
    run_dir = tmp_path / "job-run"
    submission_id = f"engram-smoke-{uuid.uuid4().hex[:8]}"
    command = [
        RAY, "job", "submit",
        "--address", ray_head.dashboard_url,
        "--submission-id", submission_id,
        "--working-dir", ".",
        "--", "engram", "train", "configs/smoke.yaml", "--run-dir", str(run_dir),
    ]
    try:
        result = _run(command, ray_head.env())
    except subprocess.TimeoutExpired:
        _run([RAY, "job", "stop", "--address", ray_head.dashboard_url, submission_id], ray_head.env(), timeout=60)
        raise
    assert result.returncode == 0, _tail(result.stdout)
    assert ray_head.api(f"/api/jobs/{submission_id}")["status"] == "SUCCEEDED"
    _assert_run_folder(run_dir, result.stdout)

    # What --working-dir uploaded: the repository's code, not the venv, run folders or .git.
    packages = ray_head.temp_dir / "ray" / "session_latest" / "runtime_resources" / "working_dir_files"
    unpacked = [p for p in packages.glob("_ray_pkg_*") if p.is_dir()]
    assert len(unpacked) == 1, sorted(packages.iterdir())
    names = {p.relative_to(unpacked[0]).parts[0] for p in unpacked[0].rglob("*")}
    assert {"engram", "configs", "pyproject.toml"} <= names
    assert not names & {".venv", ".git", "runs", "__pycache__"}, names
    size = sum(p.stat().st_size for p in unpacked[0].rglob("*") if p.is_file())
    assert size < 20 * 2**20, f"working_dir upload is {size / 2**20:.1f} MiB"


@pytest.mark.parametrize("token", [None, "0" * 64], ids=["no-token", "wrong-token"])
def test_ray_job_submit_without_the_token_is_refused(ray_head: Head, tmp_path: Path, token: str | None):
    run_dir = tmp_path / "refused-run"
    command = [
        RAY, "job", "submit", "--address", ray_head.dashboard_url, "--working-dir", ".", "--no-wait",
        "--", "engram", "train", "configs/smoke.yaml", "--run-dir", str(run_dir),
    ]
    result = _run(command, ray_head.env(token=token), timeout=120)
    assert result.returncode != 0, _tail(result.stdout)
    assert re.search(r"authenticat|unauthori[sz]ed|token", result.stdout, re.IGNORECASE), _tail(result.stdout)
    assert not run_dir.exists()
    submitted = [job.get("entrypoint", "") for job in ray_head.api("/api/jobs/")]
    assert not any(str(run_dir) in entrypoint for entrypoint in submitted)


def test_engram_train_joins_the_head_with_address(ray_head: Head, tmp_path: Path):
    run_dir = tmp_path / "address-run"
    command = [ENGRAM, "train", "configs/smoke.yaml", "--address", ray_head.gcs_address, "--run-dir", str(run_dir)]
    result = _run(command, ray_head.env())
    assert result.returncode == 0, _tail(result.stdout)
    _assert_run_folder(run_dir, result.stdout)
    # It ran as a driver of this cluster, not on an embedded Ray of its own.
    drivers = [job for job in ray_head.api("/api/jobs/") if job.get("type") == "DRIVER"]
    assert any(str(run_dir) in (job.get("entrypoint") or "") for job in drivers), drivers
