"""TLS to Redis (``rediss://`` and the ``redis.tls_*`` settings), against a real redis-server
listening on a TLS port only, with a certificate authority, server and client certificates made
by ``openssl`` for the test: ``tickcast run`` ingests and publishes, its health check, ``status``,
``subscribe`` and the Python client follow; without the CA, or without the client certificate a
server asks for, the connection fails in one line; TLS settings with a plain URL are refused."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from tickcast.service.bus import codec, keys
from tickcast.service.bus.embedded import free_port
from tickcast.service.client import START, subscribe
from tickcast.service.ops.config import ConfigError, load_settings
from tickcast.service.ticks import trade

from support import CLI, environment, http, start, wait_until

BTC = "BTC/USDT:USDT"
SIGNALS = keys.signals_key("tickcast", "sim", BTC)


def openssl(*args: str) -> None:
    tool = shutil.which("openssl")
    if tool is None:
        pytest.fail("no openssl on PATH: run `make system-deps`", pytrace=False)
    subprocess.run([tool, *args], check=True, capture_output=True, timeout=60)


def issue(where: Path, name: str, subject: str, ca: str | None, extension: str = "") -> None:
    """``<name>.key`` (P-256) and ``<name>.crt``: self-signed without ``ca``, else signed by
    ``<ca>.crt`` with ``extension`` (an openssl ``-extfile`` line)."""
    key, crt = str(where / f"{name}.key"), str(where / f"{name}.crt")
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key]
    if ca is None:
        openssl("req", "-x509", *newkey, "-out", crt, "-days", "2", "-subj", subject)
        return
    csr = str(where / f"{name}.csr")
    openssl("req", *newkey, "-out", csr, "-subj", subject)
    ext = where / f"{name}.ext"
    ext.write_text(extension + "\n")
    openssl("x509", "-req", "-in", csr, "-CA", str(where / f"{ca}.crt"), "-CAkey",
            str(where / f"{ca}.key"), "-CAcreateserial", "-out", crt, "-days", "2",
            "-extfile", str(ext))  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ca``, ``server`` (127.0.0.1 and localhost) and ``client`` keys and certificates."""
    where = tmp_path_factory.mktemp("tls")
    issue(where, "ca", "/CN=tickcast test CA", None)
    issue(where, "server", "/CN=localhost", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost")
    issue(where, "client", "/CN=tickcast test client", "ca", "extendedKeyUsage=clientAuth")
    return where


def tls_options(certs: Path, clients: str) -> list[str]:
    """redis-server flags for TLS with ``certs`` (``--tls-auth-clients`` ``clients``)."""
    return ["--tls-cert-file", str(certs / "server.crt"), "--tls-key-file",
            str(certs / "server.key"), "--tls-ca-cert-file", str(certs / "ca.crt"),
            "--tls-auth-clients", clients]  # fmt: skip


@pytest.fixture(scope="module")
def tls_server(start_system_redis: Callable[..., Any], certs: Path) -> Any:
    """A redis-server on a TLS port only (no plain port), not asking for client certificates."""
    return start_system_redis(certs / "redis", tls_options(certs, "no"), tls=True)


@pytest.fixture
def admin(tls_server: Any, certs: Path) -> Iterator[redis.Redis]:
    """A client of the TLS server (the CA given), on an emptied server."""
    client = redis.Redis.from_url(tls_server.url("rediss"), ssl_ca_certs=str(certs / "ca.crt"))
    client.flushall()
    try:
        yield client
    finally:
        client.close()


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def add_tick(client: redis.Redis) -> None:
    tick = trade("sim", BTC, 1_700_000_000_000, 1, 60000.0, 0.5, 1, "7")
    client.xadd(keys.ticks_key("tickcast", "sim", BTC), codec.encode(tick))  # type: ignore[arg-type]


async def test_run_ingests_and_publishes_over_tls_and_health_status_and_subscribers_follow(
    tls_server: Any, certs: Path, admin: redis.Redis, tmp_path: Path
) -> None:
    url, ca = tls_server.url("rediss"), str(certs / "ca.crt")
    port = free_port()
    env = environment(tmp_path, TICKCAST__REDIS__URL=url, TICKCAST__REDIS__TLS_CA_FILE=ca)
    log = tmp_path / "run.log"
    proc = start(["run", "--exchange", "sim", "--no-view", "--metrics-port", str(port)], env, log)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"tickcast run exited:\n{log.read_text()}")
            return http(f"http://127.0.0.1:{port}/readyz")[0] == 200 and admin.xlen(SIGNALS) > 0

        wait_until("signals, and the health check's PING over TLS", ready, 60)
        plain = environment(tmp_path / "s", TICKCAST__REDIS__URL=url)  # the CA as a flag below
        status = cli(["status", "--json", "--set", f"redis.tls_ca_file={ca}"], plain)
        assert status.returncode == 0, status.stderr
        rows = orjson.loads(status.stdout)["symbols"]
        assert all(r["last_tick_age_s"] is not None for r in rows) and len(rows) == 3, rows
        got = cli(["subscribe", "--json", "--from-start", "--count", "2", "--symbols", BTC], env)
        assert got.returncode == 0, got.stderr
        assert [orjson.loads(line)["symbol"] for line in got.stdout.splitlines()] == [BTC] * 2
        async with subscribe(f"{url}?ssl_ca_certs={ca}", [BTC], from_id=START) as signals:
            first = await anext(aiter(signals))
        assert first.symbol == BTC
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0, log.read_text()
    assert admin.hget(keys.ckpt_key("tickcast", "sim", BTC), "model"), "final checkpoint"


@pytest.mark.parametrize("command", [["status"], ["run", "--exchange", "sim"]])
def test_without_the_ca_the_certificate_is_refused_in_one_line(
    tls_server: Any, admin: redis.Redis, tmp_path: Path, command: list[str]
) -> None:
    add_tick(admin)
    env = environment(tmp_path, TICKCAST__REDIS__URL=tls_server.url("rediss"))
    out = cli([*command, "--set", "metrics.enabled=false"] if command[0] == "run" else command, env)
    assert out.returncode == 2, out.stderr  # a configuration error: no retrying for ever
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("tickcast: error: Redis's TLS certificate did not verify:"), out.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in last and "Traceback" not in out.stderr


def test_a_server_asking_for_a_client_certificate_gets_the_configured_one(
    start_system_redis: Callable[..., Any], certs: Path, tmp_path: Path
) -> None:
    server = start_system_redis(tmp_path / "redis", tls_options(certs, "yes"), tls=True)
    ca, crt, key = (str(certs / f) for f in ("ca.crt", "client.crt", "client.key"))
    client = redis.Redis.from_url(server.url("rediss"), ssl_ca_certs=ca, ssl_certfile=crt,
                                  ssl_keyfile=key)  # fmt: skip
    try:
        add_tick(client)
    finally:
        client.close()
    env = environment(tmp_path, TICKCAST__REDIS__URL=server.url("rediss"),
                      TICKCAST__REDIS__TLS_CA_FILE=ca)  # fmt: skip
    without = cli(["status"], env)
    assert without.returncode == 1 and "Traceback" not in without.stderr, without.stderr
    assert without.stderr.startswith("tickcast: error: Redis unreachable:"), without.stderr
    cert = ["--set", f"redis.tls_cert_file={crt}", "--set", f"redis.tls_key_file={key}"]
    with_cert = cli(["status", "--json", *cert], env)
    assert with_cert.returncode == 0, with_cert.stderr
    assert orjson.loads(with_cert.stdout)["symbols"][0]["last_tick_age_s"] is not None
    server.stop()


def test_tls_files_with_a_plain_url_are_refused_before_connecting(
    certs: Path, tmp_path: Path
) -> None:
    env = environment(tmp_path, TICKCAST__REDIS__URL=f"redis://127.0.0.1:{free_port()}/0",
                      TICKCAST__REDIS__TLS_CA_FILE=str(certs / "ca.crt"))  # fmt: skip
    out = cli(["status"], env)
    assert out.returncode == 2, out.stderr
    assert "is not rediss://" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"redis.tls_ca_file": "/nonexistent/ca.crt"}, "tls_ca_file: Path does not point to a"),
        ({"redis.tls_key_file": "CERT"}, "redis.tls_key_file needs redis.tls_cert_file"),
    ],
)
def test_tls_settings_are_checked_when_loaded(
    certs: Path, given: dict[str, str], message: str
) -> None:
    values = {k: str(certs / "client.key") if v == "CERT" else v for k, v in given.items()}
    with pytest.raises(ConfigError, match=message):
        load_settings(None, values)
