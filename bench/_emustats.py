"""The bundled MAST emulator as a process, plus a second port telling what it served.

``python bench/_emustats.py [--rate R] [--latency S] [--program PID:FILES:SIZE ...]``
prints one line, ``MAST emulator listening on URL stats STATS_URL``, and serves until
SIGTERM. ``GET STATS_URL/stats`` answers JSON:

- ``files``: file requests received (GET or HEAD of ``Download/file``, the cdn or the
  public bucket) since the last reset;
- ``first_file``: ``time.monotonic()`` (the same clock in every process on Linux) when
  the first of them was seen, or null;
- ``bytes``: body bytes sent since the reset; ``last_byte``: when that count last grew;
- ``requests``: every request since the reset (portal queries included).

``POST STATS_URL/reset`` zeroes them. Requests are seen by polling the emulator's own
record list every :data:`POLL` s (and the list is emptied each time, so memory stays
flat over 100,000 requests): times are to within a few milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from typing import Any

from aiohttp import web

from hstsync.emulator.catalogue import default_catalogue
from hstsync.emulator.server import CDN_PATH, CLOUD_BUCKET, DOWNLOAD_PATH, Emulator

POLL = 0.002
FILE_PATHS = (DOWNLOAD_PATH, CDN_PATH, f"/{CLOUD_BUCKET}/")


class Stats:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.reset()

    def reset(self) -> None:
        self.files = 0
        self.requests = 0
        self.first_file: float | None = None
        self.base_bytes = self.emu.bytes_sent
        self.seen_bytes = self.emu.bytes_sent
        self.last_byte: float | None = None

    def poll(self) -> None:
        now = time.monotonic()
        records = self.emu.requests
        if records:
            files = sum(1 for r in records if r.path.startswith(FILE_PATHS))
            if files and self.first_file is None:
                self.first_file = now
            self.files += files
            self.requests += len(records)
            records.clear()  # handlers keep their own record; only the list goes
        if self.emu.bytes_sent != self.seen_bytes:
            self.seen_bytes = self.emu.bytes_sent
            self.last_byte = now

    def document(self) -> dict[str, Any]:
        self.poll()
        return {
            "files": self.files,
            "first_file": self.first_file,
            "bytes": self.emu.bytes_sent - self.base_bytes,
            "last_byte": self.last_byte,
            "requests": self.requests,
        }


async def serve(args: argparse.Namespace) -> None:
    catalogue = default_catalogue()
    for spec in args.program:
        pid, files, size = spec.split(":")
        catalogue.add_program(pid, files=int(files), size=int(float(size)))
    emu = Emulator(catalogue, rate=args.rate, latency=args.latency)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with emu:
        stats = Stats(emu)

        async def get(_: web.Request) -> web.Response:
            return web.json_response(stats.document())

        async def reset(_: web.Request) -> web.Response:
            stats.poll()
            stats.reset()
            return web.json_response({})

        app = web.Application()
        app.router.add_get("/stats", get)
        app.router.add_post("/reset", reset)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        print(f"MAST emulator listening on {emu.url} stats http://127.0.0.1:{port}", flush=True)
        try:
            while not stop.is_set():
                stats.poll()
                await asyncio.sleep(POLL)
        finally:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--program", action="append", default=[])
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
