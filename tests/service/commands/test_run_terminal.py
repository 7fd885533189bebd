"""``tickcast run`` in a terminal, as a user runs it: a pseudo-terminal is its controlling
terminal, Ctrl-C is a byte typed into it, and signals come from outside.

Ctrl-C stops the service cleanly with exit status 0, and under make (``make run``) make ends
with status 0 too: the view reads Ctrl-C as a key, so the terminal does not send SIGINT to
make. The terminal's modes are given back when it exits. SIGINT and SIGTERM sent to the
process stop it with status 0 as well.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shlex
import shutil
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from support import CLI, environment

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SYMBOL = "BTC/USDT:USDT"
RUN = [*CLI, "run", "--exchange", "sim", "--speed", "4", "--symbols", SYMBOL]
SIGNAL_ROW = re.compile(re.escape(SYMBOL) + r" +\d\d:\d\d:\d\d\.\d{3} ")
CTRL_C = b"\x03"


class Terminal:
    """A command whose controlling terminal is a pseudo-terminal of 50 x 160 cells."""

    def __init__(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # pragma: no cover - the child
            try:
                os.execvpe(argv[0], list(argv), env)
            finally:
                os._exit(127)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        self.raw = b""
        self.status: int | None = None

    @property
    def text(self) -> str:
        """Everything written so far, without the escape sequences."""
        return ANSI.sub("", self.raw.decode(errors="replace"))

    def _read(self, timeout: float) -> int:
        """Read what is there within ``timeout`` s: how many bytes, -1 once it is closed."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return 0
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            return -1
        self.raw += data
        return len(data) or -1

    def expect(self, pattern: re.Pattern[str], timeout: float = 60.0) -> None:
        """Read until ``pattern`` appears in the text."""
        deadline = time.monotonic() + timeout
        while not pattern.search(self.text):
            if time.monotonic() > deadline or self._read(0.1) < 0:
                raise AssertionError(f"no {pattern.pattern!r} in:\n{self.text[-4000:]}")

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def wait(self, timeout: float = 20.0) -> int:
        """Read until the command exits; its exit status."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            closed = self._read(0.1) < 0
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                while self._read(0.1) > 0:
                    pass
            elif time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout} s:\n{self.text[-4000:]}")
            elif closed:
                time.sleep(0.05)
        return self.status

    def close(self) -> None:
        """Stop the command if it still runs (SIGTERM to its group, then SIGKILL)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.status is not None:
                break
            try:
                os.killpg(self.pid, sig)
                self.wait(15)
            except (AssertionError, ProcessLookupError):
                continue
        os.close(self.fd)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    try:
        yield opened
    finally:
        for terminal in opened:
            terminal.close()


def run_env(tmp_path: Path) -> dict[str, str]:
    return environment(tmp_path, TICKCAST__METRICS__PORT="0", TERM="xterm")


def shell(command: str) -> list[str]:
    return ["/bin/sh", "-c", command]


def test_ctrl_c_stops_the_view_cleanly_and_gives_the_terminal_back(
    tmp_path: Path, terminals: list[Terminal]
) -> None:
    run = shlex.join(RUN)
    term = Terminal(shell(f"{run}; echo EXIT=$?; stty -a"), run_env(tmp_path))
    terminals.append(term)
    term.expect(SIGNAL_ROW)
    term.type(b"typed ahead")  # no echo tears the table
    term.type(CTRL_C)
    term.expect(re.compile(r"EXIT=(\d+)"))
    assert re.search(r"EXIT=(\d+)", term.text).group(1) == "0", term.text[-3000:]  # type: ignore[union-attr]
    assert term.wait() == 0
    frames = term.text.split("EXIT=")[0]
    assert "typed ahead" not in frames
    last = frames[frames.rindex("tickcast run · redis") :]
    header = last.splitlines()[0]
    assert re.fullmatch(
        r"tickcast run · redis unix://\S+redis\.sock\?db=0 · metrics http://127\.0\.0\.1:\d+/metrics",
        header,
    ), header
    assert "feed sim: stopped" in last
    modes = term.text.split("EXIT=0")[1]
    for flag in ("isig", "icanon", "echo"):
        assert re.search(rf"(?<![-\w]){flag}\b", modes), f"{flag} not restored:\n{modes}"


def test_make_run_ends_with_status_zero_on_ctrl_c(
    tmp_path: Path, terminals: list[Terminal]
) -> None:
    make = shutil.which("make")
    assert make is not None, "make is needed (make run)"
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"run:\n\t{shlex.join(RUN)}\n")
    term = Terminal(shell(f"{make} -f {makefile} run; echo MAKE=$?"), run_env(tmp_path))
    terminals.append(term)
    term.expect(SIGNAL_ROW)
    term.type(CTRL_C)
    term.expect(re.compile(r"MAKE=\d+"))
    assert "MAKE=0" in term.text, term.text[-3000:]
    assert "Interrupt" not in term.text and "make: ***" not in term.text


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_view_with_status_zero(
    tmp_path: Path, terminals: list[Terminal], sig: signal.Signals
) -> None:
    term = Terminal(RUN, run_env(tmp_path))
    terminals.append(term)
    term.expect(SIGNAL_ROW)
    os.kill(term.pid, sig)
    assert term.wait() == 0, term.text[-3000:]
    assert "stopped in" in term.text


def test_sigint_without_the_view_exits_zero(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*RUN, "--no-view"], env=run_env(tmp_path), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while "owning" not in log.read_text() or "listening" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text()
