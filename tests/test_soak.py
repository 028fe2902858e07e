"""kill -9 soak: a real daemon killed at random moments over a multi-file mirror.

Between kills, every file under its final name must already be byte-identical (a kill
can leave a ``.part``, never a short or wrong final file) and the database must pass
``PRAGMA integrity_check``. After the last restart the daemon finishes on its own: the
tree is byte-identical to what the archive serves, no ``.part`` is left, every product
is done and no request is stuck in resolving or downloading.

Segmented transfers are in play: the 14 MB and 10 MB files of 7291 are over
``segment_min``, and every third kill (the first included) waits until a segmented
part's control file holds bytes. The soak asserts that a kill caught a file in segments,
that parts were taken up exactly where a kill left them (the ranges their control files
say are missing) and it prints the bytes the archive sent per byte of the final tree, bounded
below what restarting every part from zero would cost.

The short version runs by default (3 kills). The long one is ``slow`` and runs when
``SOAK_KILLS`` is set: ``SOAK_KILLS=50 pytest -m slow tests/test_soak.py``;
``SOAK_SEED`` replays a failing run.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from helpers import Daemon, daemon, drop, request_state, until, write_config

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.emulator import Emulator, RecordedRequest, default_catalogue
from hstsync.errors import StoreError
from hstsync.model import ProductState, RequestState
from hstsync.store.db import Store
from hstsync.transfer.control import Control, read_control
from hstsync.transfer.ranges import missing

SEED = int(os.environ.get("SOAK_SEED", "20240601"))
#: bytes/s per response: a 2 MB file takes ~1 s, a 14 MB one ~7 s alone, ~2 s in segments
RATE = 2e6
REQUESTS = ("7291", "90001")
#: segments allowed, stated rather than left to the defaults: files over 8 MiB split
DOWNLOAD = {"segment_min": 8 << 20, "connections": 16, "per_host": 8}
#: the short soak's bytes fetched per byte kept must stay under this. Measured over
#: seeds (RATE 2e6, 3 kills): 1.04-1.35 resuming, the waste being the bytes each kill
#: catches since the last checkpoint (CHECKPOINT_SECONDS) plus the first answer's
#: overrun when a file splits. Had every kill restarted its parts from zero: 1.57-1.89
#: estimated (fetched + the bytes the kills' parts held), 1.48-2.10 when the test
#: deleted the parts after each kill (2.10 at the default seed, where resuming measured
#: 1.04-1.18).
BOUND = 1.4


def final_files(root: Path) -> list[Path]:
    top = root / "mirror" / "mastDownload"
    return [
        p
        for p in top.rglob("*")
        if p.is_file() and not p.name.endswith((".part", ".part.ctl", ".tmp"))
    ]


def assert_consistent(root: Path, emulator: Emulator, when: str) -> None:
    """What must hold at any moment, even right after a SIGKILL."""
    for path in final_files(root):
        body = emulator.body(f"mast:HST/product/{path.name}")
        assert path.read_bytes() == body, f"{when}: {path.name} is under its final name but wrong"
    db = root / "hstsync.db"
    if db.exists():
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",), when


def all_done(root: Path) -> bool:
    if any(request_state(root, name) is not RequestState.DONE for name in REQUESTS):
        return False
    try:
        with Store.open_readonly(root / "hstsync.db") as store:
            return all(
                row.state is ProductState.DONE for name in REQUESTS for row in store.products(name)
            )
    except StoreError:
        return False


@dataclass(frozen=True, slots=True)
class Part:
    """A ``.part`` as a SIGKILL left it: its length and what its control file says."""

    size: int
    record: Control | None

    @property
    def held(self) -> int:
        return self.record.held if self.record is not None else 0

    @property
    def segmented(self) -> bool:
        """Preallocated to the file's length: written in ranges (or about to be)."""
        return self.record is not None and self.record.size == self.size > self.held

    def resume_offsets(self) -> set[int]:
        """Where a resume of this part starts its requests (0 excluded: that is a restart)."""
        if self.record is None:
            return set()
        end = self.record.size if self.record.size is not None else self.size + 1
        return {start for start, _ in missing(end, self.record.done)} - {0}


@dataclass
class Life:
    """One daemon process: the emulator requests it made and, when it was killed, the
    parts it left."""

    requests: list[RecordedRequest] = field(default_factory=list)
    killed: bool = False
    parts: dict[str, Part] = field(default_factory=dict)


@dataclass
class Soak:
    lives: list[Life]
    #: bytes of the final tree
    kept: int

    @property
    def requests(self) -> list[RecordedRequest]:
        return [r for life in self.lives for r in life.requests]


def parts_on_disk(root: Path) -> dict[str, Part]:
    return {
        p.name.removesuffix(".part"): Part(p.stat().st_size, read_control(p, p.stat().st_size))
        for p in (root / "mirror").rglob("*.part")
    }


def segments_checkpointed(root: Path) -> bool:
    """Whether some segmented part's control file says it holds bytes."""
    return any(part.segmented and part.held > 0 for part in parts_on_disk(root).values())


def file_gets(requests: list[RecordedRequest]) -> list[tuple[str, int, RecordedRequest]]:
    """(file name, first byte asked for, request) of each GET for a file's bytes."""
    gets = []
    for r in requests:
        uri = parse_qs(r.query).get("uri", [""])[0]
        if r.method != "GET" or not uri.startswith("mast:"):
            continue
        headers = {k.lower(): v for k, v in r.headers.items()}
        match = re.fullmatch(r"bytes=(\d+)-\d*", headers.get("range", "").strip())
        gets.append((uri.rsplit("/", 1)[-1], int(match[1]) if match else 0, r))
    return gets


async def soak(root: Path, kills: int, seed: int, *, files: int = 12, rate: float = RATE) -> Soak:
    rng = random.Random(seed)
    catalogue = default_catalogue()
    catalogue.add_program(90001, files=files, size=2880 * 700)
    lives: list[Life] = []
    async with Emulator(catalogue, rate=rate) as emulator:
        config = write_config(root, emulator.url, download=DOWNLOAD)
        drop(root, "7291.toml", TUTORIAL_MANIFEST)
        drop(root, "90001.toml", "proposal_id = 90001\n")
        for kill in range(kills):
            d: Daemon
            life = Life()
            lives.append(life)
            seen = len(emulator.requests)
            async with daemon(root, config) as d:
                sent = emulator.bytes_sent
                if kill % 3 == 0:
                    # every third kill (the first included) comes once a segmented part
                    # has checkpointed some bytes, so that its record is what resumes
                    await until(
                        lambda: segments_checkpointed(root) or all_done(root),
                        what="a segment record to hold bytes",
                        daemon=d,
                    )
                    await asyncio.sleep(rng.uniform(0.0, 0.5))
                else:
                    if rng.random() < 0.7:
                        # mostly mid-transfer; else wherever it is (resolving, recovering)
                        await until(
                            lambda sent=sent: emulator.bytes_sent > sent or all_done(root),
                            what="transfers to start",
                            daemon=d,
                        )
                    await asyncio.sleep(rng.uniform(0.0, 2.5))
                if not all_done(root):  # else finished between kills: nothing to interrupt
                    d.proc.kill()
                    await d.proc.wait()
                    life.killed = True
                    life.parts = parts_on_disk(root)
            life.requests = emulator.requests[seen:]
            if not life.killed:
                break
            assert_consistent(root, emulator, f"after kill {kill + 1} (seed {seed})")

        life = Life()
        lives.append(life)
        seen = len(emulator.requests)
        async with daemon(root, config) as d:
            await until(
                lambda: all_done(root), what=f"the mirror to finish (seed {seed})", daemon=d
            )
            assert "Traceback" not in d.output()
        life.requests = emulator.requests[seen:]

        with Store.open_readonly(root / "hstsync.db") as store:
            products = [row for name in REQUESTS for row in store.products(name)]
            for name in REQUESTS:
                request = store.get_request(name)
                assert request is not None and request.state is RequestState.DONE
        assert len(products) == 6 + files
        expected = {root / "mirror" / row.product.relpath(): row.product for row in products}
        assert set(final_files(root)) == set(expected)
        for path, product in expected.items():
            assert path.read_bytes() == emulator.body(product.data_uri), path.name
            assert product.size == path.stat().st_size
        assert list((root / "mirror").rglob("*.part*")) == []  # parts and their records
        assert_consistent(root, emulator, f"at the end (seed {seed})")
        return Soak(lives, sum(path.stat().st_size for path in expected))


def segmented_at_a_kill(result: Soak) -> list[str]:
    """Files a kill caught mid-way through a segmented transfer: a preallocated part with
    its control file on disk, and that life had asked for the file at two or more places."""
    caught = []
    for life in result.lives:
        starts: dict[str, set[int]] = {}
        for name, start, _ in file_gets(life.requests):
            starts.setdefault(name, set()).add(start)
        for name, part in life.parts.items():
            if part.segmented and len(starts.get(name, set())) >= 2:
                caught.append(name)
    return caught


def resumed(result: Soak) -> list[tuple[str, int, bool]]:
    """(file, offset, segmented) of each request that took up a part where a kill left
    it: in the life after a kill, a ranged GET for a file whose part was on disk at that
    kill, starting exactly where a range its control file says is missing starts. Ranged
    requests that merely split a fresh file, or a restart from zero, do not count."""
    found = []
    for before, after in itertools.pairwise(result.lives):
        for name, start, _ in file_gets(after.requests):
            part = before.parts.get(name)
            if part is not None and start in part.resume_offsets():
                found.append((name, start, part.segmented))
    return found


def fetched_per_kept(result: Soak) -> tuple[float, float]:
    """Body bytes the archive sent for files per byte of the final tree, as measured
    and as it would have been had every kill thrown the parts away (their held bytes
    fetched again)."""
    fetched = sum(r.body_bytes_sent for _, _, r in file_gets(result.requests))
    lost = 0
    for life in result.lives:
        asked = {name for name, _, _ in file_gets(life.requests)}
        # a part this life did not touch would have been lost once, at an earlier kill
        lost += sum(part.held for name, part in life.parts.items() if name in asked)
    return fetched / result.kept, (fetched + lost) / result.kept


def check(result: Soak, label: str, bound: float | None) -> None:
    ratio, from_zero = fetched_per_kept(result)
    resumes = resumed(result)
    print(
        f"\n{label}: {ratio:.3f} bytes fetched per byte kept"
        f" ({from_zero:.3f} had every kill restarted its parts from zero);"
        f" {len(resumes)} request(s) resumed a part,"
        f" {sum(segments for _, _, segments in resumes)} of them of a segmented part;"
        f" caught in segments by a kill: {sorted(set(segmented_at_a_kill(result)))}"
    )
    assert segmented_at_a_kill(result), "no kill caught a segmented transfer"
    assert resumes, "no part was taken up where a kill left it"
    assert any(segments for _, _, segments in resumes), "no segmented part was resumed"
    if bound is not None:
        assert ratio < bound, f"{ratio:.3f} bytes fetched per byte kept (at most {bound})"


async def test_kill_9_soak_short(tmp_path: Path) -> None:
    check(await soak(tmp_path, kills=3, seed=SEED), "short soak", BOUND)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(
    "SOAK_KILLS" not in os.environ, reason="the long soak runs when SOAK_KILLS=N is set"
)
async def test_kill_9_soak_long(tmp_path: Path) -> None:
    # slower and bigger than the short one, so there is still work left to interrupt
    kills = int(os.environ["SOAK_KILLS"])
    result = await soak(tmp_path, kills=kills, seed=SEED, files=24, rate=RATE / 4)
    # each of many kills may cost up to a checkpoint interval of every connection:
    # the ratio is reported, not bounded
    check(result, "long soak", None)
