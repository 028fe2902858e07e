"""What keeping the mirror true costs: ``hstsync verify`` of an unchanged mirror, and the
SHA-256 every download now takes.

``python bench/verify.py`` (about 2 minutes; ``--files N`` and ``--size BYTES`` change the
mirror, ``--gigabytes`` the download) measures, against the bundled emulator as its own
process:

- **verify of an unchanged mirror** of 10,000 files, with and without the archive's
  HTTP validators: wall time and CPU of the whole ``hstsync verify`` process, peak
  memory, the bytes it read here (every file is hashed) and the body bytes it asked of
  the archive (the emulator's count: none with validators, a 64 KiB head at most per
  file without; the files here are smaller than that, so each head is the whole file);
- **the hashing cost per GB while downloading**: SHA-256 in this process over 1 GiB
  (CPU s/GB, what hashing alone costs), against the CPU s/GB of a whole ``run --once``
  fetching a file of ``--gigabytes`` from an unthrottled emulator on loopback: the
  share of a download's CPU that its hash takes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PYTHON = sys.executable


@dataclass(frozen=True, slots=True)
class Proc:
    seconds: float
    cpu: float
    rss_mb: float
    status: int
    output: str


def measured(command: list[str], cwd: Path) -> Proc:
    started = time.perf_counter()
    log = cwd / f"{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=out)
        _, status, usage = os.wait4(proc.pid, 0)
    return Proc(
        time.perf_counter() - started,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        os.waitstatus_to_exitcode(status),
        log.read_text(errors="replace"),
    )


class Emulator:
    """``hstsync emulator`` as a process of its own, on a free port."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "hstsync", "emulator", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                self.url = match[1]
                break
        else:
            raise SystemExit("the emulator did not start")

    def served(self) -> int:
        with urllib.request.urlopen(f"{self.url}/emulator/admin/served", timeout=30) as reply:
            return int(json.load(reply)["total"])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def workdir(root: Path, name: str, server: str, proposal: int) -> Path:
    work = root / name
    (work / "requests").mkdir(parents=True)
    (work / "config.toml").write_text(
        '[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n'
        f'[mast]\nserver = "{server}"\n'
    )
    (work / "requests" / f"{proposal}.toml").write_text(f"proposal_id = {proposal}\n")
    return work


def hstsync(*args: str) -> list[str]:
    return [PYTHON, "-m", "hstsync", *args, "--config", "config.toml"]


def verify_unchanged(root: Path, files: int, size: int, validators: bool) -> dict[str, object]:
    proposal = 90300
    emu = Emulator(
        "--program", f"{proposal}:{files}:{size}", *([] if validators else ["--no-validators"])
    )
    try:
        work = workdir(root, f"verify-{validators}", emu.url, proposal)
        mirrored = measured(hstsync("run", "--once"), work)
        if mirrored.status:
            raise SystemExit(f"run --once failed:\n{mirrored.output[-2000:]}")
        on_disk = sum(p.stat().st_size for p in (work / "mirror").rglob("*.fits"))
        before = emu.served()
        run = measured(hstsync("verify"), work)
        asked = emu.served() - before
        if run.status or f"{files} the same" not in run.output:
            raise SystemExit(f"verify did not find the mirror unchanged:\n{run.output[-2000:]}")
    finally:
        emu.close()
    return {
        "validators": validators,
        "files": files,
        "seconds": run.seconds,
        "cpu": run.cpu,
        "rss_mb": run.rss_mb,
        "read_here": on_disk,
        "asked_of_archive": asked,
        "mirror_seconds": mirrored.seconds,
    }


def hashing(gigabytes: float, root: Path) -> dict[str, float]:
    block = os.urandom(1 << 20)
    before = resource.getrusage(resource.RUSAGE_SELF)
    digest = hashlib.sha256()
    for _ in range(1024):
        digest.update(block)
    after = resource.getrusage(resource.RUSAGE_SELF)
    alone = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    size = int(gigabytes * 1e9) // 2880 * 2880
    emu = Emulator("--program", f"90301:1:{size}")
    try:
        work = workdir(root, "hashing", emu.url, 90301)
        run = measured(hstsync("run", "--once"), work)
        if run.status:
            raise SystemExit(f"run --once failed:\n{run.output[-2000:]}")
    finally:
        emu.close()
    per_gb = run.cpu / (size / 1e9)
    return {
        "sha256_cpu_s_per_gb": alone / (2**30 / 1e9),
        "download_cpu_s_per_gb": per_gb,
        "download_seconds": run.seconds,
        "share": (alone / (2**30 / 1e9)) / per_gb,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=2880 * 4)
    parser.add_argument("--gigabytes", type=float, default=1.0)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="hstsync-bench-verify-"))
    try:
        rows = [verify_unchanged(root, args.files, args.size, v) for v in (True, False)]
        cost = hashing(args.gigabytes, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"verify of an unchanged mirror of {args.files:,} files of {args.size:,} bytes")
    print("| validators | wall s | CPU s | peak RSS MB | read here | asked of the archive |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {'yes' if row['validators'] else 'no'} | {row['seconds']:.1f} | {row['cpu']:.1f} "
            f"| {row['rss_mb']:.0f} | {row['read_here']:,} B | {row['asked_of_archive']:,} B |"
        )
    print()
    print(
        f"SHA-256 alone: {cost['sha256_cpu_s_per_gb']:.2f} CPU s/GB; a whole `run --once` of "
        f"{args.gigabytes:g} GB: {cost['download_cpu_s_per_gb']:.2f} CPU s/GB "
        f"({cost['download_seconds']:.1f} s); the hash is {cost['share']:.0%} of it"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
