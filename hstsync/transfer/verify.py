"""Checks beyond size: a file must be what its name says before it counts as done.

Owns content verification. A file named ``*.fits`` must open as FITS with astropy,
every HDU that carries ``CHECKSUM``/``DATASUM`` cards must match them, and every HDU
must be whole. Corrupt means: a checksum mismatch, a truncated file or HDU, or not
FITS at all (an HTML error page served with 200). Other files are judged by their
format's end where it has one (``hstsync.formats``: a JPEG, PNG, gzip or JSON cut short
is corrupt); others by their size alone, and not even that when the server and the
catalogue disagree on it (:class:`Unverifiable`: nothing can tell a cut answer).

Non-compliant is not corrupt. Files in the archive carry NUL padding after END,
non-standard cards, long CONTINUE strings, a first card other than SIMPLE, stray
bytes after the last HDU; astropy warns about them (``VerifyWarning``,
``AstropyUserWarning``) and reads them. Those warnings are logged once per message at
INFO (each file's at DEBUG) and never fail a file, and none reaches the user's
terminal. Only the warnings that mean lost bytes (``File may have been truncated``)
count against a file.

Two readers. A plain file is read by :mod:`hstsync.transfer.fits` (the standard's sums,
no astropy, a few tens of microseconds for a small file); that reader only ever says
"sound", and anything else goes to astropy, whose verdict and words are final.

Blocking: it reads the whole file, so callers run it in a worker thread. It streams:
the file is memory-mapped (or handed over in memory) and summed in place, never read
into memory a second time. The warnings machinery is process-global, so astropy's
verifications take a lock, and only warnings issued by ``astropy.io.fits`` count,
not those of another thread.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from pathlib import Path
from typing import Any

from hstsync.errors import CorruptFileError
from hstsync.formats import end_check
from hstsync.transfer.fits import BLOCK, mapped_sound, plainly_sound

log = logging.getLogger(__name__)

#: one verification at a time: ``warnings.catch_warnings`` is not thread-safe
_LOCK = threading.Lock()
_READ = 1 << 20
#: a FITS card's keyword field: up to 8 of A-Z 0-9 _ -, padded with spaces
_FIRST_CARD = re.compile(rb"[A-Z0-9_-]{1,8} {0,7}[ -~]{72}")
#: astropy's words for bytes that are missing: corrupt, not merely non-compliant
_LOST_BYTES = ("truncated",)
#: non-compliance messages already logged at INFO in this process
_SEEN: set[str] = set()


def needs_verification(name: str) -> bool:
    """Whether a file of this (final) name gets a content check."""
    return name.lower().endswith(".fits")


def verify_file(path: Path, name: str, data: bytes | None = None, *, require: bool = False) -> None:
    """Raise :class:`CorruptFileError` unless ``path`` holds a sound ``name``.

    ``name`` is the file's final name (``path`` is usually its ``.part``). ``data``:
    the bytes ``path`` holds, when the caller has them in memory (not read again). A
    FITS file must pass its sums; another file, its format's end check where its format
    has one (``hstsync.formats``: JPEG, PNG, gzip, JSON…). ``require``: the server and
    the catalogue disagree on the length, so a file nothing can check is not accepted
    (:class:`Unverifiable`). An ``OSError`` with an errno (the disk failed) propagates.
    """
    if not needs_verification(name):
        _check_end(path, name, data, require)
        return
    if data is not None:
        if plainly_sound(data):
            return
    elif mapped_sound(path):
        return
    with _LOCK:
        _verify_fits(path)


def _check_end(path: Path, name: str, data: bytes | None, require: bool) -> None:
    """A file without FITS sums, judged by its format's end (``hstsync.formats``); with
    ``require``, a file its format cannot judge is :class:`Unverifiable`."""
    check = end_check(name)
    if check is None:
        if require:
            raise Unverifiable(f"a {_kind(name)} file cannot be checked by its format")
        return
    if data is not None:
        check.feed(data)
    else:
        with open(path, "rb") as fh:  # the caller's part or file, checked regular
            while chunk := fh.read(_READ):
                check.feed(chunk)
    found = check.finish()
    if found.whole is False:
        raise CorruptFileError(found.reason)
    if found.whole is None and require:
        raise Unverifiable(f"{check.name} cannot tell ({found.reason})")


def _kind(name: str) -> str:
    suffix = Path(name).suffix.lstrip(".")
    return suffix.upper() if suffix else "suffix-less"


class Unverifiable(CorruptFileError):
    """The server sent a length the catalogue does not give, for a file whose format
    cannot say it is whole: possibly cut short, and nothing else can tell."""


def _verify_fits(path: Path) -> None:
    with open(path, "rb") as fh:
        first = fh.read(80)
        size = fh.seek(0, 2)
    if len(first) < 80 or not _FIRST_CARD.fullmatch(first):
        raise CorruptFileError("not a valid FITS file (it does not start with a FITS header)")
    if size < BLOCK:
        raise CorruptFileError(f"not a valid FITS file (truncated: {size} bytes)")

    # Imported here: astropy.io.fits costs a few hundred ms to import, and a daemon
    # mirroring only previews should not pay for it.
    from astropy.io import fits

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # ignore_missing_simple: a first card other than SIMPLE is non-compliant,
            # and astropy's "try with ignore_missing_simple=True" must not reach users
            with fits.open(
                path,
                memmap=True,
                checksum=False,
                lazy_load_hdus=False,
                ignore_missing_simple=True,
            ) as hdus:
                _check_hdus(path, hdus, size, [str(w.message) for w in _ours(caught)])
        except CorruptFileError:
            raise
        except OSError as exc:
            if exc.errno is not None:
                raise
            raise CorruptFileError(f"not a valid FITS file ({_first_line(exc)})") from None
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
            # astropy's parsers raise these for headers or data it cannot make sense
            # of (a data part shorter than its header says: TypeError, buffer too small)
            lost = _lost(_ours(caught))
            reason = lost or _first_line(exc)
            raise CorruptFileError(f"not a valid FITS file ({reason})") from None
    notes = sorted({_first_line(w.message) for w in _ours(caught)})
    if notes:
        log.debug("%s: FITS not fully compliant (read anyway): %s", path.name, "; ".join(notes))
        for note in notes:
            key = re.sub(r"\d+", "N", note)
            if key not in _SEEN:
                _SEEN.add(key)
                log.info("FITS not fully compliant, read anyway (said once): %s", note)


def _check_hdus(path: Path, hdus: Any, size: int, messages: list[str]) -> None:
    lost = _lost_text(messages)
    if lost:
        raise CorruptFileError(f"not a valid FITS file ({lost})")
    if len(hdus) == 0:
        raise CorruptFileError("not a valid FITS file (no HDU)")
    end = 0
    for index, hdu in enumerate(hdus):
        if type(hdu).__name__ == "_CorruptedHDU":
            raise CorruptFileError(f"not a valid FITS file (HDU {index} cannot be read)")
        info = hdu.fileinfo()
        end = int(info["datLoc"]) + int(getattr(hdu, "_data_size", 0) or 0)
        if end > size:
            raise CorruptFileError(
                f"not a valid FITS file (truncated in HDU {index}: {size} of {end} bytes)"
            )
        # verify_* return 0 for a mismatch, 1 for a match, 2 without the card
        if hdu.verify_datasum() == 0 or hdu.verify_checksum() == 0:
            raise CorruptFileError(f"FITS checksum mismatch in HDU {index} — the file is corrupt")
    _check_tail(path, end, size)


def _check_tail(path: Path, end: int, size: int) -> None:
    """Bytes after the last HDU astropy read: padding and strays are non-compliant; an
    extension header there that could not be read is a truncated (or damaged) HDU."""
    start = end + (-end % BLOCK)
    if start >= size:
        return
    with open(path, "rb") as fh:
        fh.seek(start)
        head = fh.read(8)
    if head.startswith(b"XTENSION"):
        raise CorruptFileError(
            f"not a valid FITS file (an extension at byte {start} cannot be read: "
            "truncated or damaged)"
        )


def _ours(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in caught if "astropy/io/fits" in w.filename.replace("\\", "/")]


def _lost(caught: list[warnings.WarningMessage]) -> str | None:
    return _lost_text([str(w.message) for w in caught])


def _lost_text(messages: list[str]) -> str | None:
    for message in messages:
        if any(word in message.lower() for word in _LOST_BYTES):
            return _first_line(message)
    return None


def _first_line(what: object) -> str:
    text = str(what).strip().splitlines()
    line = text[0].strip() if text else type(what).__name__
    return line[:200]
