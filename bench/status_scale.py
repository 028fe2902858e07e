"""Benchmark: ``hstsync status`` on a database of 1,000,000 products.

Builds the database through hstsync's own :class:`~hstsync.store.db.Store`
(``upsert_request`` + ``replace_products``, one call per request, so the schema,
indexes and rows are exactly what the daemon writes), then spreads states over the
products with one SQL UPDATE per state (80 % done, 15 % pending, 4 % failed with an
error, 1 % auth_required) — per-row ``Store.mark`` calls would take an hour. Then
times ``hstsync status``, ``status --json`` and ``status REQUEST`` (one request's
products) as whole processes, best of ``--repeat``: wall seconds and CPU seconds (user +
sys, steadier on a shared machine), next to ``python -c pass`` (the interpreter's floor).

Usage: ``python bench/status_scale.py [--products 1000000] [--requests 50]
[--keep DIR]`` (``--keep`` reuses or leaves the database in DIR).
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PYTHON

from hstsync.model import Product, Request
from hstsync.store.db import Store

SUFFIXES = ("flt", "flc", "drz", "drc", "raw", "spt", "trl", "asn", "x1d", "jif")


def build(db: Path, products: int, requests: int) -> float:
    started = time.perf_counter()
    per_request = -(-products // requests)
    with Store(db) as store:
        made = 0
        for r in range(requests):
            name, pid = f"program-{r:03d}", str(10_000 + r)
            store.upsert_request(Request(name, (pid,)), f"/requests/{name}.toml")
            batch = []
            for i in range(min(per_request, products - made)):
                obs_id = f"i{r:03d}{i // 10:05d}"
                filename = f"{obs_id}_{SUFFIXES[i % 10]}.fits"
                batch.append(
                    Product(
                        data_uri=f"mast:HST/product/{filename}",
                        obs_collection="HST",
                        obs_id=obs_id,
                        filename=filename,
                        size=2880 * (1 + (i * 7919) % 5000),
                        obsid=str(30_000_000 + r * per_request + i // 10),
                        product_type="SCIENCE",
                        calib_level=2,
                        data_rights="PUBLIC",
                        description="DADS FLT file - Calibrated exposure WFC3",
                    )
                )
            store.replace_products(name, batch)
            made += len(batch)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE products SET state = 'done', bytes_done = size, done_at = updated"
            " WHERE id % 100 < 80"
        )
        conn.execute(
            "UPDATE products SET state = 'failed', attempts = 6,"
            " last_error = 'HTTP 503 from the archive after 6 attempts'"
            " WHERE id % 100 BETWEEN 80 AND 83"
        )
        conn.execute("UPDATE products SET state = 'auth_required' WHERE id % 100 = 84")
        conn.execute("UPDATE products SET bytes_done = size / 3 WHERE id % 100 = 85")
        conn.execute(
            "UPDATE requests SET state = CASE WHEN rowid % 5 = 0 THEN 'done' ELSE 'incomplete' END"
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


def count(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM products").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def best_of(command: list[str], repeat: int) -> tuple[float, int]:
    """The shortest wall time of ``repeat`` runs of ``command``, and its output's size."""
    wall, _, size = timed(command, repeat)
    return wall, size


def timed(command: list[str], repeat: int) -> tuple[float, float, int]:
    """Best of ``repeat`` runs: wall seconds, CPU seconds (user + sys of the process, less
    disturbed than wall time on a shared machine), and the output's size."""
    walls, cpus, size = [], [], 0
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run(command, capture_output=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode not in (0, 1):  # 1: some request is incomplete, as built
            raise SystemExit(f"{' '.join(command)}: exit {proc.returncode}: {proc.stderr!r}")
        size = len(proc.stdout)
    return min(walls), min(cpus), size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="directory for the database")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hstsync-status-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        db = root / "hstsync.db"
        if count(db) != args.products:
            db.unlink(missing_ok=True)
            seconds = build(db, args.products, args.requests)
            print(
                f"built {args.products:,} products in {args.requests} requests through "
                f"Store.replace_products in {seconds:.1f} s"
            )
        config = root / "config.toml"
        config.write_text(
            f'[paths]\nrequests = "{root / "requests"}"\nmirror = "{root / "mirror"}"\n'
            f'database = "{db}"\n'
        )
        print(f"database: {db.stat().st_size / 1e6:.0f} MB, {count(db):,} products")
        base = [PYTHON, "-m", "hstsync", "status", "--config", str(config)]
        baseline = [PYTHON, "-m", "hstsync", "--version"]
        print(f"{'command':40} {'wall s':>8} {'CPU s':>8} {'output':>12}")
        for label, command in (
            ("python -c pass (the interpreter alone)", [PYTHON, "-c", "pass"]),
            ("hstsync --version (start-up alone)", baseline),
            ("hstsync status", base),
            ("hstsync status --json", [*base, "--json"]),
            ("hstsync status program-000", [*base, "program-000"]),
            ("hstsync status program-000 --json", [*base, "program-000", "--json"]),
        ):
            wall, cpu, size = timed(command, args.repeat)
            print(f"{label:40} {wall:8.3f} {cpu:8.3f} {size:>10,} B")
        print(f"(whole processes, best of {args.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
