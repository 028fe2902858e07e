"""Checks beyond size: a file must be what its name says before it counts as done.

Owns content verification. A file named ``*.fits`` must open as FITS with astropy,
and every HDU that carries ``CHECKSUM``/``DATASUM`` cards must match them; a body that
is not FITS at all (an HTML error page served with 200 at the right size) fails too.
Files without checksum cards pass if they parse. Other names (previews, ``.fits.gz``)
are not checked beyond their size.

Blocking: it reads the whole file, so callers run it in a worker thread. It streams:
the file is memory-mapped and summed in place, never read into memory a second time.

Astropy reports structural trouble (truncation, trailing bytes, a broken header) as
warnings, not exceptions. They are *recorded*, not turned into errors where they are
raised: an exception thrown from inside ``fits.open`` leaves its file handle open.
The warnings machinery is process-global, so verifications take a lock, and only
warnings issued by ``astropy.io.fits`` count, not those of another thread.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

from hstsync.errors import CorruptFileError

#: one verification at a time: ``warnings.catch_warnings`` is not thread-safe
_LOCK = threading.Lock()


def needs_verification(name: str) -> bool:
    """Whether a file of this (final) name gets a content check."""
    return name.lower().endswith(".fits")


def verify_file(path: Path, name: str) -> None:
    """Raise :class:`CorruptFileError` unless ``path`` holds a sound ``name``.

    ``name`` is the file's final name (``path`` is usually its ``.part``).
    An ``OSError`` with an errno (the disk failed) propagates unchanged.
    """
    if needs_verification(name):
        with _LOCK:
            _verify_fits(path)


def _verify_fits(path: Path) -> None:
    # Imported here: astropy.io.fits costs a few hundred ms to import, and a daemon
    # mirroring only previews should not pay for it.
    from astropy.io import fits

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=True, checksum=False, lazy_load_hdus=False) as hdus:
                for index, hdu in enumerate(hdus):
                    # verify_* return 0 for a mismatch, 1 for a match, 2 without the card
                    if hdu.verify_datasum() == 0 or hdu.verify_checksum() == 0:
                        raise CorruptFileError(
                            f"FITS checksum mismatch in HDU {index} — the file is corrupt"
                        )
        except OSError as exc:
            if exc.errno is not None:
                raise
            raise CorruptFileError(f"not a valid FITS file ({_first_line(exc)})") from None
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            # astropy's parsers raise these for headers it cannot make sense of
            raise CorruptFileError(f"not a valid FITS file ({_first_line(exc)})") from None
    for warning in caught:
        if "astropy/io/fits" in warning.filename.replace("\\", "/"):
            raise CorruptFileError(f"not a valid FITS file ({_first_line(warning.message)})")


def _first_line(what: object) -> str:
    text = str(what).strip().splitlines()
    line = text[0].strip() if text else type(what).__name__
    return line[:200]
