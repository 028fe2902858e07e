"""How bytes move: one file from a URL to its final name, verified and hashed.

- ``downloader``: :class:`Downloader`, one file from the first request to its final name.
- ``fetch``: one attempt at a file's missing ranges, over one connection or several.
- ``partfile``: :class:`~hstsync.transfer.partfile.PartFile`, a file on its way: the
  locked ``.part``, what it holds, its hash; ``control`` the control file beside it;
  ``land`` giving a complete part its final name, durably (small files in batches).
- ``work``: a file's ranges (held, waiting, running); ``ranges`` the arithmetic (pure).
- ``outcome``: :class:`Transfer` -> :class:`Outcome` (values), ``after_fallback``.
- ``retry``: the retry policy, all of it; ``budget``: the connection budget.
- ``http``: the aiohttp edge (session, GET with redirects, reading an answer).
- ``probe``: asking the archive whether its copy of a file changed (``verify``).
- ``verify``: a file's content check (FITS CHECKSUM/DATASUM); ``digest`` its SHA-256.
- ``disk``: opening only regular files, never through a link; disk errors in words.

Never imports ``archive``, ``store`` or ``service``: a transfer knows a URL and a path.
"""

from hstsync.transfer.bandwidth import Bandwidth
from hstsync.transfer.digest import ALGORITHM, hash_file
from hstsync.transfer.disk import file_size, part_path
from hstsync.transfer.downloader import Downloader
from hstsync.transfer.header import keywords, primary_header
from hstsync.transfer.http import open_session
from hstsync.transfer.land import retire
from hstsync.transfer.outcome import Outcome, Transfer, after_fallback
from hstsync.transfer.partfile import held_bytes
from hstsync.transfer.probe import HEAD_BYTES, Probe, Verdict
from hstsync.transfer.verify import needs_verification, verify_file

__all__ = [
    "ALGORITHM",
    "HEAD_BYTES",
    "Bandwidth",
    "Downloader",
    "Outcome",
    "Probe",
    "Transfer",
    "Verdict",
    "after_fallback",
    "file_size",
    "hash_file",
    "held_bytes",
    "keywords",
    "needs_verification",
    "open_session",
    "part_path",
    "primary_header",
    "retire",
    "verify_file",
]
