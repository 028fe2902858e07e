"""FITS verification: corrupt is refused, merely non-compliant is read.

Corrupt: a checksum mismatch, a truncated file or HDU, not FITS at all (an HTML page).
Non-compliant but sound: NUL padding after END, non-standard cards, CONTINUE long
strings, no checksum cards, a first card other than SIMPLE, stray bytes after the
last HDU — and every file of astropy's own test data that astropy opens, unless its
checksums are wrong. The bytes are built here with astropy, then damaged by hand.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from hstsync.emulator.fits import Bodies
from hstsync.emulator.quirks import BodyStyle
from hstsync.transfer.fits import plainly_sound as _plainly_sound
from hstsync.transfer.verify import CorruptFileError, _verify_fits, verify_file

DATA = Path(fits.__file__).parent / "tests" / "data"


def written(hdus: list[fits.hdu.base.ExtensionHDU], *, checksum: bool = False) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits.HDUList(hdus).writeto(buffer, checksum=checksum, output_verify="silentfix")
    return buffer.getvalue()


def image(checksum: bool = True) -> bytes:
    primary = fits.PrimaryHDU(np.arange(1000, dtype=">i4"))
    return written([primary, fits.ImageHDU(np.ones(500))], checksum=checksum)


def table(checksum: bool = True) -> bytes:
    cols = fits.ColDefs([fits.Column(name="flux", format="E", array=np.arange(300.0))])
    return written([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)], checksum=checksum)


def nul_padded(data: bytes) -> bytes:
    end = data.index(b"END" + b" " * 77) + 80
    return data[:end] + b"\0" * (2880 - end) + data[2880:]


def non_standard_cards() -> bytes:
    header = b"".join(
        c.ljust(80).encode()
        for c in [
            "SIMPLE  =                    T",
            "BITPIX  =                    8",
            "NAXIS   =                    0",
            "EXTEND  =                    T",
            "lowercase= 'not allowed'",
            "HIERARCH ESO DET CHIP = 'x'",
            "BADVALUE= 12x4 / not a number",
            "DATE    = '2001/12/31'",
            "END",
        ]
    )
    return header.ljust(2880, b" ")


def long_strings() -> bytes:
    primary = fits.PrimaryHDU(np.zeros(10, dtype=">i2"))
    primary.header["LONGSTR"] = "a value that goes on " * 20
    primary.header["HISTORY"] = "reprocessed " * 10
    return written([primary], checksum=True)


def no_simple() -> bytes:
    data = image(checksum=False)
    return b"COMMENT   first card is not SIMPLE".ljust(80) + data[80:]


def wrong_datasum() -> bytes:
    data = bytearray(image(checksum=True))
    at = data.index(b"DATASUM =")
    value = bytes(data[at + 10 : at + 30])
    digits = value.replace(b"'", b"").strip()
    wrong = str(int(digits) + 1).encode()
    data[at + 10 : at + 30] = value.replace(digits, wrong.ljust(len(digits))[: len(digits)])
    return bytes(data)


def flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


SOUND = {
    "checksummed image": image(),
    "checksummed table": table(),
    "no checksum cards": image(checksum=False),
    "NUL padding after END": nul_padded(image(checksum=False)),
    "non-standard cards": non_standard_cards(),
    "CONTINUE long strings": long_strings(),
    "first card not SIMPLE": no_simple(),
    "stray bytes after the last HDU": image() + b"\x01" * 10,
    "zero padding after the last HDU": image() + b"\0" * 2880,
}

CORRUPT = {
    "a flipped data byte": (flipped(image(), 5000), "FITS checksum mismatch in HDU 0"),
    "a wrong DATASUM": (wrong_datasum(), "FITS checksum mismatch in HDU 0"),
    "truncated data": (image()[:-3000], "truncated"),
    "truncated last block": (image()[:-100], "truncated"),
    "truncated extension header": (image()[: 2880 * 3 + 200], "truncated or damaged"),
    "an HTML page": (b"<!DOCTYPE html><html><body>Error</body></html>".ljust(5760), "not a valid"),
    "not FITS at all": (bytes(range(256)) * 40, "not a valid FITS file"),
    "shorter than a block": (image()[:1000], "not a valid FITS file"),
}


@pytest.mark.parametrize("style", list(SOUND))
def test_non_compliant_but_sound_fits_passes(
    tmp_path: Path, style: str, caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    path = tmp_path / "x.fits.part"
    path.write_bytes(SOUND[style])

    with caplog.at_level(logging.DEBUG, logger="hstsync.transfer.verify"):
        verify_file(path, "x.fits")

    # astropy's compliance warnings are logged, never shown to the user as warnings
    assert not [w for w in recwarn if "astropy" in w.filename]
    assert all(r.levelno <= logging.INFO for r in caplog.records)
    assert "ignore_missing_simple" not in caplog.text


@pytest.mark.parametrize("style", list(CORRUPT))
def test_corrupt_fits_is_refused(tmp_path: Path, style: str) -> None:
    data, reason = CORRUPT[style]
    path = tmp_path / "x.fits.part"
    path.write_bytes(data)

    with pytest.raises(CorruptFileError, match=reason):
        verify_file(path, "x.fits")


def _astropy_reads(path: Path) -> tuple[bool, bool]:
    """(astropy opens it, its checksums are right where it has them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with fits.open(path, checksum=False) as hdus:
                sums = [(h.verify_datasum(), h.verify_checksum()) for h in hdus]
        except Exception:
            return False, False
    return True, all(0 not in pair for pair in sums)


ASTROPY_FILES = sorted(DATA.glob("*.fits"))


@pytest.mark.skipif(not ASTROPY_FILES, reason="astropy's test data are not installed")
@pytest.mark.parametrize("path", ASTROPY_FILES, ids=lambda p: p.name)
def test_real_world_styles_from_astropys_test_data(path: Path) -> None:
    opens, sums_right = _astropy_reads(path)
    if opens and sums_right:
        verify_file(path, path.name)
    elif opens:
        with pytest.raises(CorruptFileError, match="checksum mismatch"):
            verify_file(path, path.name)
    else:
        with pytest.raises(CorruptFileError):
            verify_file(path, path.name)


def test_astropys_files_include_the_styles_that_matter() -> None:
    names = {p.name for p in ASTROPY_FILES}
    if names:
        assert {"checksum.fits", "checksum_false.fits", "o4sp040b0_raw.fits"} <= names


# -- the plain reader: standard files without astropy, never a different verdict ----------


def _astropy_verdict(tmp_path: Path, data: bytes) -> bool:
    """astropy's verdict alone (the plain reader bypassed): sound or not."""
    path = tmp_path / "astropy.fits.part"
    path.write_bytes(data)
    try:
        _verify_fits(path)
    except CorruptFileError:
        return False
    return True


def _emulator_bodies() -> dict[str, bytes]:
    bodies = Bodies()
    out = {}
    for style in BodyStyle:
        for size in (5760, 31680, 2880 * 40):
            body = bodies.get(f"mast:HST/product/x{size}_{style.name.lower()}.fits", size, style)
            out[f"emulator {style.name} {size}"] = body.read(0, size)
    return out


EVERY_SAMPLE = {
    **SOUND,
    **{name: data for name, (data, _) in CORRUPT.items()},
    **{p.name: p.read_bytes() for p in ASTROPY_FILES},
    **_emulator_bodies(),
}


@pytest.mark.parametrize("name", list(EVERY_SAMPLE))
def test_plain_reader_says_sound_only_where_astropy_does(tmp_path: Path, name: str) -> None:
    data = EVERY_SAMPLE[name]
    if _plainly_sound(data):
        assert _astropy_verdict(tmp_path, data)


def test_plain_reader_never_passes_a_damaged_byte_astropy_refuses(tmp_path: Path) -> None:
    data = image() + table()[2880:]  # headers, data and a table extension, all summed
    for at in range(0, len(data), 97):
        damaged = flipped(data, at)
        if _plainly_sound(damaged):
            assert _astropy_verdict(tmp_path, damaged), at


@pytest.mark.parametrize(
    "name", ["checksummed image", "checksummed table", "no checksum cards", "emulator FITS 31680"]
)
def test_standard_fits_is_verified_without_astropy(name: str) -> None:
    assert _plainly_sound(EVERY_SAMPLE[name])
    assert not _plainly_sound(flipped(EVERY_SAMPLE[name], len(EVERY_SAMPLE[name]) // 2 + 1))


def test_bytes_in_memory_are_verified_like_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.fits.part"
    for data, _ in CORRUPT.values():
        path.write_bytes(data)
        with pytest.raises(CorruptFileError):
            verify_file(path, "x.fits", data)
    for data in SOUND.values():
        path.write_bytes(data)
        verify_file(path, "x.fits", data)


def test_checking_a_large_file_holds_a_bounded_share_of_it_in_memory(tmp_path: Path) -> None:
    """A 5 GB mosaic is checked in place (mapped), and the pages summed are let go as
    the check goes: the process's peak resident memory stays far below the file's
    size (a mapping kept whole would hold it all: 4.9 GB for a 5 GB file)."""
    import subprocess
    import sys

    size = 2880 * (384 * 1024 * 1024 // 2880)  # 384 MiB, whole FITS blocks
    body = Bodies().get("mast:JWST/product/jw01345-o001_t001_nircam_clear-f200w_i2d.fits", size)
    path = tmp_path / "mosaic_i2d.fits"
    with path.open("wb") as out:
        for at in range(0, size, 8 << 20):
            out.write(body.read(at, min(8 << 20, size - at)))
    probe = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from hstsync.transfer.verify import verify_file\n"
        "import numpy, astropy.io.fits\n"  # imported before the baseline is taken
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "verify_file(Path(sys.argv[1]), 'mosaic_i2d.fits')\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((after - before) // 1024)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    grew_mib = int(proc.stdout)
    assert grew_mib < 160, f"checking a 384 MiB file took {grew_mib} MiB more resident memory"
