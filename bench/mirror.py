"""Benchmark: hstsync against astroquery's ``download_products`` on the tutorial's selection.

Kept for the README's command; the work is done by ``bench/run.py`` (which also runs
aria2c and parfive, more workloads and a CPU measurement). This runs only its
proposal 7291 workload with astroquery and hstsync, hstsync at ``--concurrency``
connections. Usage: ``python bench/mirror.py [--rate 4e6] [--latency 0.05]
[--repeat 1] [--concurrency 8]``.
"""

from __future__ import annotations

import argparse
import sys

import run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=4e6, help="bytes/s per connection")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds to first byte")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each tool (best kept)")
    args = parser.parse_args()
    return run.main(
        [
            f"--rate={args.rate}",
            f"--latency={args.latency}",
            f"--budget={args.concurrency}",
            f"--repeat={args.repeat}",
            "--workloads=7291",
            "--tools=hstsync,astroquery",
            "--skip-over=inf",
            "--no-cpu",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
