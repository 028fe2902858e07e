"""Benchmark: peak memory of ``hstsync run --once`` as a program grows from 1 to 2,000 files.

Starts the emulator (no rate limit, no latency) with synthetic programs of
``--sizes`` small files each, mirrors each program with ``hstsync run --once`` in a
fresh directory, checks every byte against the emulator's bodies, and prints the
process's peak resident set size (``ru_maxrss`` from ``os.wait4`` on that process
alone). Flat memory means the 2,000-file row is close to the 100-file row.

Usage: ``python bench/memory.py [--sizes 1,100,2000] [--file-size 11520]
[--budget 16]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    PYTHON,
    emulator,
    emulator_errors,
    fits_size,
    fresh,
    hstsync_budget,
    mb,
    resolve,
    synthetic,
    tree_digest,
)


def peak_rss(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, int]:
    """Wall seconds, exit status and peak RSS (KiB) of one process."""
    started = time.perf_counter()
    with (cwd / "tool.log").open("wb") as log:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, proc.returncode, usage.ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,2000", help="files per program")
    parser.add_argument("--file-size", type=int, default=11520, help="bytes per file")
    parser.add_argument("--budget", type=int, default=16, help="hstsync connections")
    args = parser.parse_args()
    counts = [int(n) for n in args.sizes.split(",")]
    size = fits_size(args.file_size)
    programs = [synthetic(f"m{n}", f"{n} files", 91000 + i, n, size) for i, n in enumerate(counts)]
    budget = hstsync_budget(args.budget)
    download = "".join(f"{k} = {v}\n" for k, v in budget.items())
    env = dict(os.environ, HSTSYNC_NO_KEYRING="1")
    print(f"hstsync run --once, files of {size:,} B, unthrottled emulator, {budget}")
    print(f"{'files':>6} {'bytes':>10} {'seconds':>8} {'peak RSS':>10}")
    ok = True
    log = Path(tempfile.mkdtemp(prefix="hstsync-memory-emulator-")) / "emulator.log"
    with (
        tempfile.TemporaryDirectory(prefix="hstsync-memory-") as tmp,
        emulator(None, 0.0, [p for w in programs for p in w.programs], log) as server,
    ):
        scratch = Path(tmp)
        for n, workload in zip(counts, programs, strict=True):
            resolved = resolve(server, workload, fresh(scratch, "resolve"))
            work = fresh(scratch, "run")
            (work / "requests").mkdir()
            (work / "requests" / "program.toml").write_text(workload.manifest())
            (work / "config.toml").write_text(
                f'[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "h.db"\n'
                f'[mast]\nserver = "{server}"\n[download]\n{download}'
            )
            command = [PYTHON, "-m", "hstsync", "run", "--once", "--config", "config.toml"]
            seconds, status, rss = peak_rss(command, work, env)
            note = ""
            if status != 0 or tree_digest(work / "mirror") != resolved.digest:
                ok, note = False, f"  FAILED (exit {status} or wrong bytes)"
            print(f"{n:6} {mb(resolved.bytes):>10} {seconds:8.2f} {rss / 1024:7.1f} MB{note}")
    print("(peak RSS: ru_maxrss of the hstsync process, from os.wait4)")
    if errors := emulator_errors(log):
        print(f"note: {errors}")
    shutil.rmtree(log.parent, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
