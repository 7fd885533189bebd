"""The systemd units of ``deploy/systemd``, checked with the real tools.

* ``systemd-analyze verify`` checks every unit in a scratch root (``--root``) that holds the
  units, the system's own units they depend on, and an executable at the ``ExecStart=`` path
  (``/opt/tickcast/bin/tickcast``). It exits 0 on much that is wrong (an unknown key or a bad
  value is "ignored" with a message), so a unit passes only when it exits 0 *and* prints
  nothing; the negative control shows broken copies failing that check.
* ``systemd-analyze security --offline=yes`` scores each service's exposure.
* Each ``ExecStart=`` command is parsed by tickcast's own parser, and the settings it loads
  (the unit's environment, the example environment file, ``deploy/systemd/tickcast.toml``)
  are checked: metrics on loopback, the ingester's port apart from the worker's, the state
  directory systemd makes.
* ``MemoryDenyWriteExecute=yes`` is only safe while nothing in the process maps memory both
  writable and executable: ``tickcast run`` runs here under the kernel's equivalent
  (``prctl(PR_SET_MDWE)``, inherited by its redis-server), with a positive control that such
  a mapping is refused under it.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tickcast.service.bus.embedded import free_port
from tickcast.service.cli import build_parser
from tickcast.service.commands import ingest as ingest_command
from tickcast.service.commands.run import overrides
from tickcast.service.ops.config import Settings, settings_from_args

from support import CLI, environment, http, wait_until

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "deploy" / "systemd"
SERVICES = {"ingest": "tickcast-ingest", "worker": "tickcast-worker", "run": "tickcast-run"}
TARGET = "tickcast.target"
EXECUTABLE = "/opt/tickcast/bin/tickcast"
CONFIG = "/etc/tickcast/tickcast.toml"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
HINT = "install systemd (`make system-deps`)"
MAX_EXPOSURE = 2.0
"""``systemd-analyze security`` scores 0 (locked down) to 10; the units score 1.4 today."""
HARDENING = {
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
}
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
MDWE_EXEC = f"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
    sys.exit(f"prctl(PR_SET_MDWE): {{os.strerror(ctypes.get_errno())}}")
os.execv(sys.argv[1], sys.argv[1:])
"""
"""``python -c MDWE_EXEC PROGRAM ARGS...``: exec PROGRAM with writable+executable memory
refused (Linux >= 6.3), as systemd's ``MemoryDenyWriteExecute=`` does."""
WRITE_EXECUTE = "import mmap; mmap.mmap(-1, 4096, prot=7)"
"""Map an anonymous page readable, writable and executable (PROT_READ|WRITE|EXEC = 7)."""


Unit = dict[str, list[tuple[str, str]]]


def parse_unit(text: str) -> Unit:
    """A unit file's ``[Section]`` -> ``(key, value)`` pairs in order (keys may repeat)."""
    unit: Unit = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            unit.setdefault(section, [])
            continue
        key, _, value = line.partition("=")
        unit[section].append((key.strip(), value.strip()))
    return unit


def unit(name: str) -> Unit:
    """``deploy/systemd/<name>`` parsed."""
    return parse_unit((UNITS / name).read_text())


def values(parsed: Unit, section: str, key: str) -> list[str]:
    """Every value of ``key`` in ``section``."""
    return [v for k, v in parsed.get(section, []) if k == key]


def one(parsed: Unit, section: str, key: str) -> str:
    """The one value of ``key`` in ``section``."""
    found = values(parsed, section, key)
    assert len(found) == 1, f"{section}.{key}: {found}"
    return found[0]


def systemd_analyze() -> str:
    """The ``systemd-analyze`` binary (the test fails when there is none)."""
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.fail(f"no systemd-analyze on PATH: {HINT}", pytrace=False)
    return binary


@pytest.fixture(scope="module")
def scratch_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A root for ``systemd-analyze --root``: the system's units, an executable at the
    ``ExecStart=`` path (running tickcast from this checkout), and an empty unit directory
    for the units under test."""
    if not SYSTEM_UNITS.is_dir():
        pytest.fail(f"no {SYSTEM_UNITS}: {HINT}", pytrace=False)
    root = tmp_path_factory.mktemp("root")
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    executable = root / EXECUTABLE.lstrip("/")
    executable.parent.mkdir(parents=True)
    executable.write_text(f'#!/bin/sh\nexec {sys.executable} -m tickcast.service.cli "$@"\n')
    executable.chmod(0o755)
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    yield root


def install(root: Path, files: dict[str, str]) -> list[str]:
    """Put unit files (name -> text) in ``root``'s /etc/systemd/system, replacing what was
    there; return their names."""
    directory = root / "etc" / "systemd" / "system"
    for old in directory.iterdir():
        old.unlink()
    for name, text in files.items():
        (directory / name).write_text(text)
    return list(files)


def shipped_units() -> dict[str, str]:
    """The unit files of deploy/systemd, by name."""
    return {p.name: p.read_text() for p in sorted(UNITS.glob("tickcast*.service"))} | {
        TARGET: (UNITS / TARGET).read_text()
    }


def verify(root: Path, names: list[str]) -> tuple[int, str]:
    """``systemd-analyze verify`` of ``names`` in ``root``: exit code and output."""
    result = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", "--generators=no", f"--root={root}", *names],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, (result.stdout + result.stderr).strip()


def test_every_unit_passes_systemd_analyze_verify_without_a_word(scratch_root: Path) -> None:
    names = install(scratch_root, shipped_units())
    assert sorted(names) == sorted([f"{s}.service" for s in SERVICES.values()] + [TARGET])
    assert verify(scratch_root, names) == (0, "")


BREAKAGES = {
    "unknown key": ("ProtectSystem=strict", "ProtectSytem=strict"),
    "bad value": ("Restart=on-failure", "Restart=sometimes"),
    "missing executable": (f"ExecStart={EXECUTABLE} ", f"ExecStart={EXECUTABLE}x "),
    "unknown section": ("[Service]", "[Servce]"),
    "unknown system call group": (
        "SystemCallFilter=@system-service",
        "SystemCallFilter=@system-servic",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_verify_catches_a_broken_unit(scratch_root: Path, breakage: str) -> None:
    old, new = BREAKAGES[breakage]
    text = (UNITS / "tickcast-ingest.service").read_text()
    assert old in text
    names = install(scratch_root, {"broken.service": text.replace(old, new, 1)})
    assert verify(scratch_root, names) != (0, "")


def exposure(root: Path, name: str) -> float:
    """``systemd-analyze security --offline=yes``'s overall exposure of ``name``."""
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", f"--root={root}", name],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert found is not None, result.stdout + result.stderr
    return float(found.group(1))


def test_every_service_scores_a_low_exposure(scratch_root: Path) -> None:
    install(scratch_root, shipped_units())
    scores = {name: exposure(scratch_root, f"{name}.service") for name in SERVICES.values()}
    assert all(score <= MAX_EXPOSURE for score in scores.values()), scores
    bare = "[Service]\nExecStart=/opt/tickcast/bin/tickcast run\n"
    install(scratch_root, {"bare.service": bare})
    assert exposure(scratch_root, "bare.service") > 9.0  # the same scale, unhardened


@pytest.mark.parametrize("role", sorted(SERVICES))
def test_each_service_restarts_on_failure_as_a_dynamic_user_with_the_hardening(
    role: str,
) -> None:
    parsed = unit(f"{SERVICES[role]}.service")
    service = dict(parsed["Service"])  # the last value of repeated keys
    assert service["Type"] == "exec"
    assert service["Restart"] == "on-failure" and service["RestartPreventExitStatus"] == "2"
    assert service["DynamicUser"] == "yes" and service["User"] == "tickcast"
    assert service["StateDirectory"] == "tickcast"
    assert "TimeoutStopSec" in service and "RestartSec" in service
    assert {k: service.get(k) for k in HARDENING} == HARDENING
    assert values(parsed, "Service", "SystemCallFilter")[0] == "@system-service"
    environment_file = one(parsed, "Service", "EnvironmentFile")
    if role == "run":  # the private Redis needs no URL; stopped by tickcast itself
        assert environment_file == "-/etc/tickcast/run.env"
        assert service["KillMode"] == "mixed"
        assert one(parsed, "Install", "WantedBy") == "multi-user.target"
    else:  # without a URL the split layout would start a private Redis: required
        assert environment_file == f"/etc/tickcast/{role}.env"
        assert one(parsed, "Unit", "PartOf") == TARGET
        assert one(parsed, "Install", "WantedBy") == TARGET


def test_the_target_starts_the_split_layout() -> None:
    wants = one(unit(TARGET), "Unit", "Wants").split()
    assert wants == ["tickcast-ingest.service", "tickcast-worker.service"]


# -- the commands and the settings they load ------------------------------------------------


def exec_start(role: str) -> list[str]:
    """The ``ExecStart=`` command of ``role``'s unit, split as systemd splits it."""
    return shlex.split(one(unit(f"{SERVICES[role]}.service"), "Service", "ExecStart"))


def unit_environment(role: str) -> dict[str, str]:
    """The unit's ``Environment=`` (``%S``: /var/lib, for system units) and the example
    environment file's variables."""
    env: dict[str, str] = {}
    for assignment in values(unit(f"{SERVICES[role]}.service"), "Service", "Environment"):
        name, _, value = assignment.partition("=")
        env[name] = value.replace("%S", "/var/lib")
    for line in (UNITS / "tickcast.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    return env


def unit_settings(role: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What ``role``'s ``ExecStart=`` loads: its arguments through tickcast's own parser, the
    unit's environment, deploy/systemd/tickcast.toml as /etc/tickcast/tickcast.toml."""
    argv = exec_start(role)
    assert argv[0] == EXECUTABLE
    args = build_parser().parse_args(argv[1:])
    assert args.command == role and args.command_log_format == "json"
    assert args.config == Path(CONFIG)
    args.config = UNITS / "tickcast.toml"
    for name, value in unit_environment(role).items():
        monkeypatch.setenv(name, value)
    if role == "ingest":
        return ingest_command.load_settings(args)
    return settings_from_args(args, overrides(args))


def test_each_execstart_parses_and_loads_its_settings(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    settings = {role: unit_settings(role, clean_environment) for role in SERVICES}
    ports = {role: s.metrics.port for role, s in settings.items()}
    assert ports == {"ingest": 9465, "worker": 9464, "run": 9464}
    for role, loaded in settings.items():
        assert loaded.metrics.host == "127.0.0.1", role
        assert loaded.state_dir == Path("/var/lib/tickcast"), role
        assert loaded.exchange.name == ["binanceusdm"], role
    assert build_parser().parse_args(exec_start("run")[1:]).view is False


def test_tickcast_config_show_loads_the_settings_file(tmp_path: Path) -> None:
    shown = subprocess.run(
        [*CLI, "config", "show", "--config", str(UNITS / "tickcast.toml"), "--format", "json"],
        capture_output=True,
        text=True,
        env=environment(tmp_path / "state"),
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    exchange = json.loads(shown.stdout)["exchange"]
    assert exchange["name"] == ["binanceusdm"]
    assert exchange["symbols"] == ["BTC/USDT:USDT", "ETH/USDT:USDT"]


# -- MemoryDenyWriteExecute ------------------------------------------------------------------


def under_mdwe(argv: list[str]) -> list[str]:
    """``argv`` run with writable+executable memory refused."""
    return [sys.executable, "-c", MDWE_EXEC, *argv]


def test_writable_executable_memory_is_refused_under_the_wrapper_only() -> None:
    allowed = subprocess.run([sys.executable, "-c", WRITE_EXECUTE], capture_output=True, timeout=30)
    assert allowed.returncode == 0, allowed.stderr
    refused = subprocess.run(
        under_mdwe([sys.executable, "-c", WRITE_EXECUTE]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 1 and "PermissionError" in refused.stderr


def metric_total(port: int, name: str) -> float:
    """The sum of a metric's labelled samples on ``port``'s /metrics (0 when none answer)."""
    status, body = http(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return 0.0
    lines = [line for line in body.splitlines() if line.startswith(name + "{")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_tickcast_run_works_with_writable_executable_memory_refused(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "run.log"
    argv = [*CLI, "run", "--exchange", "sim", "--no-view", "--metrics-port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            under_mdwe(argv),
            env=environment(tmp_path / "state"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def publishing() -> bool:
            assert proc.poll() is None, log.read_text()
            return metric_total(port, "tickcast_signals_published_total") > 0

        wait_until("signals under MDWE", publishing, timeout=60)
        assert http(f"http://127.0.0.1:{port}/readyz")[0] == 200
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, log.read_text()[-3000:]
