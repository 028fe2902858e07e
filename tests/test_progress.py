"""Live progress: what the mirror reports, and what a terminal shows of it."""

from __future__ import annotations

import io
from pathlib import Path

from helpers import emulator_validator, leave_part
from rich.console import Console

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.cli.progress import TerminalProgress
from hstsync.config import for_directory
from hstsync.emulator import Emulator
from hstsync.service.daemon import run_once


class Recorder:
    def __init__(self) -> None:
        self.planned_calls: list[tuple[str, int, int, int]] = []
        self.bytes: dict[str, int] = {}
        self.files: dict[str, int] = {}

    def planned(self, request: str, files: int, size: int, held: int = 0) -> None:
        self.planned_calls.append((request, files, size, held))

    def advanced(self, request: str, delta: int) -> None:
        self.bytes[request] = self.bytes.get(request, 0) + delta

    def file_done(self, request: str) -> None:
        self.files[request] = self.files.get(request, 0) + 1


async def test_mirror_reports_files_and_bytes_to_progress(tmp_path: Path, emulator: Emulator):
    config = for_directory(tmp_path, server=emulator.url)
    config.paths.requests.mkdir()
    (config.paths.requests / "7291.toml").write_text(TUTORIAL_MANIFEST)
    recorder = Recorder()

    assert await run_once(config, progress=recorder) == 0

    assert recorder.planned_calls == [("7291", 6, 50_175_360, 0)]
    assert recorder.bytes == {"7291": 50_175_360}
    assert recorder.files == {"7291": 6}


def test_terminal_progress_shows_files_bytes_and_rate():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    with TerminalProgress(console) as progress:
        progress.planned("7291", 6, 50_175_360)
        progress.advanced("7291", 25_000_000)
        progress.file_done("7291")
    text = out.getvalue()
    assert "7291" in text and "all" in text
    assert "1/6 files" in text
    assert "25.0/50.2 MB" in text


async def test_resumed_pass_starts_the_bar_at_the_bytes_already_held(
    tmp_path: Path, emulator: Emulator
):
    config = for_directory(tmp_path, server=emulator.url, segment_min=0)
    config.paths.requests.mkdir()
    (config.paths.requests / "7291.toml").write_text(TUTORIAL_MANIFEST)
    x2d = config.paths.mirror / "mastDownload/HST/o58701010/o58701010_x2d.fits"
    uri = "mast:HST/product/o58701010_x2d.fits"
    leave_part(x2d, emulator.body(uri)[:4_000_000], emulator_validator(emulator, uri))
    recorder = Recorder()

    assert await run_once(config, progress=recorder) == 0

    assert recorder.planned_calls == [("7291", 6, 50_175_360, 4_000_000)]
    assert recorder.bytes == {"7291": 50_175_360 - 4_000_000}


def test_terminal_progress_starts_at_the_bytes_held():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    with TerminalProgress(console) as progress:
        progress.planned("7291", 6, 50_175_360, held=20_000_000)
        progress.advanced("7291", 5_000_000)
    assert "25.0/50.2 MB" in out.getvalue()


def test_terminal_progress_adds_each_batch_of_a_big_program_to_one_bar():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    with TerminalProgress(console) as progress:
        progress.planned("big", 4, 20_000_000)
        progress.planned("big", 2, 30_000_000, held=5_000_000)
        progress.advanced("big", 20_000_000)
        progress.file_done("big")
    text = out.getvalue()
    assert "1/6 files" in text
    assert "25.0/50.0 MB" in text
