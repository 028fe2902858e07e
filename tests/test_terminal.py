"""What a person at a terminal sees: live bars and warnings during ``run --once``, not a
log line per file; ``-q`` for warnings alone; Ctrl-C leaves no stale bar; ``-v`` and
``-q`` go before or after any command, ``emulator`` included.

The terminal is a real one: tmux at 80 columns, read back with ``capture-pane``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.emulator import Emulator, Fault, FaultKind, run_in_thread

BAR = "━"


def words(screen: str) -> str:
    """The screen's text with every run of blanks and line ends as one space: a log
    line rich wrapped at 80 columns reads as one again."""
    return " ".join(screen.split())


class Tmux:
    """One tmux server of our own (its own socket), a session of 80 × 24."""

    def __init__(self, root: Path) -> None:
        if shutil.which("tmux") is None:
            pytest.skip("needs tmux")
        self.socket = f"hstsync-test-{os.getpid()}-{time.monotonic_ns()}"
        self.root = root

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self, command: str) -> None:
        """``command`` in the pane; ``exit=N`` is printed when it ends, and the pane stays.
        The shell outlives a Ctrl-C meant for the command (its trap is reset there)."""
        script = f"trap : INT; {command}; echo exit=$?; sleep 600"
        self._tmux(
            *("new-session", "-d", "-x", "80", "-y", "24", "-c", str(self.root)),
            *("sh", "-c", script),
        )

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", *keys)

    def wait_for(self, seen: Callable[[str], bool], what: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if seen(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    terminal = Tmux(tmp_path)
    try:
        yield terminal
    finally:
        terminal.close()


@pytest.fixture
def slow() -> Iterator[Emulator]:
    """The tutorial's files at 400 kB/s a connection: a pass of several seconds."""
    with run_in_thread(rate=400_000) as emulator:
        yield emulator


def configured(root: Path, server: str) -> Path:
    (root / "requests").mkdir(exist_ok=True)
    (root / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
    config = root / "config.toml"
    config.write_text(
        '[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n'
        f'[mast]\nserver = "{server}"\n'
        "[download]\nbackoff = 0.01\nbackoff_max = 0.02\n"
    )
    return config


def hstsync(*args: str) -> str:
    """The command line of ``python -m hstsync ARGS``, without the developer's keyring."""
    return "env HSTSYNC_NO_KEYRING=1 " + shlex.join([sys.executable, "-m", "hstsync", *args])


def test_run_once_at_a_terminal_shows_bars_and_warnings_not_a_line_per_file(
    tmp_path: Path, tmux: Tmux, slow: Emulator
):
    slow.faults.add(Fault(FaultKind.STATUS, match="*o58701010_x1d.fits*", status=503))
    config = configured(tmp_path, slow.url)

    tmux.start(hstsync("run", "--once", "--config", str(config)))

    during = tmux.wait_for(lambda s: "files" in s and BAR in s, "the bars")
    end = tmux.wait_for(lambda s: "exit=" in s, "the end of the pass")
    for screen in (during, end):
        assert "INFO" not in screen, screen
    assert "WARNING" in end and "HTTP 503" in end, end  # the retried file, said once
    assert "7291: done, 6/6 files, 50.18 MB / 50.18 MB" in words(end)
    assert BAR not in end and "exit=0" in end


def test_ctrl_c_leaves_no_stale_bar(tmp_path: Path, tmux: Tmux, slow: Emulator):
    config = configured(tmp_path, slow.url)
    tmux.start(hstsync("run", "--once", "--config", str(config)))
    tmux.wait_for(lambda s: "2/6 files" in s, "the bars to show some files done")

    tmux.keys("C-c")

    end = tmux.wait_for(lambda s: "exit=" in s, "the interrupted pass to end")
    assert BAR not in end and "^C" not in end, end
    assert "interrupted: partial files are kept" in words(end)
    assert "7291: queued, 2/6 files" in words(end) and "exit=1" in end


def test_quiet_shows_no_bars_and_only_warnings(tmp_path: Path, tmux: Tmux, slow: Emulator):
    config = configured(tmp_path, slow.url)

    tmux.start(hstsync("run", "--once", "-q", "--config", str(config)))

    end = tmux.wait_for(lambda s: "exit=" in s, "the end of the pass", timeout=90)
    assert end.strip().splitlines() == ["exit=0"]


def test_quiet_off_a_terminal_logs_only_warnings(tmp_path: Path, slow: Emulator):
    slow.faults.add(Fault(FaultKind.STATUS, match="*o58701010_x1d.fits*", status=503))
    config = configured(tmp_path, slow.url)

    done = subprocess.run(
        [sys.executable, "-m", "hstsync", "-q", "run", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=110,
        env=dict(os.environ, HSTSYNC_NO_KEYRING="1"),
    )

    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines and all(" WARNING " in line for line in lines), done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["-v", "emulator", "--port", "0"],
        ["emulator", "-v", "--port", "0"],
        ["emulator", "--port", "0", "-q"],
    ],
)
def test_verbose_and_quiet_go_before_or_after_emulator_too(args: list[str]):
    proc = subprocess.Popen(
        [sys.executable, "-m", "hstsync", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("MAST emulator listening on http://127.0.0.1:"), first
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "unrecognized" not in err
