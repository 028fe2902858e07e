"""A file's own format says whether it is whole (``hstsync.formats``): files cut
anywhere are never called whole, damage the format can see is found, and what the
format allows after its end is accepted; the verdict never depends on how the bytes
were cut into pieces.

Real files of each format, built here byte by byte (JPEG, PNG) or by the standard
library (gzip, bzip2, xz, JSON), cut at every place (or at hundreds of places for the
compressed ones) and fed whole and in random pieces.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import random
import struct
import zlib
from collections.abc import Iterable

import pytest

from hstsync.formats import JSON_LIMIT, Verdict, end_check, verdict

# -- building files ------------------------------------------------------------------------


def segment(code: int, body: bytes) -> bytes:
    return bytes([0xFF, code]) + struct.pack(">H", len(body) + 2) + body


def entropy(seed: int, size: int = 1500) -> bytes:
    """Scan data as an encoder writes it: every 0xFF stuffed with 0x00, a restart
    marker in the middle."""
    data = random.Random(seed).randbytes(size).replace(b"\xff", b"\xff\x00")
    middle = len(data) // 2
    while data[middle - 1] == 0xFF:  # not between a 0xFF and its stuffing
        middle += 1
    return data[:middle] + b"\xff\xd0" + data[middle:]


def jpeg(*, scans: int = 1, thumbnail: bool = False, trailing: bytes = b"") -> bytes:
    out = b"\xff\xd8" + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    if thumbnail:  # EXIF data holding a whole JPEG of its own, end marker and all
        inner = b"\xff\xd8" + segment(0xDB, bytes(65)) + b"\x12\x34" * 40 + b"\xff\xd9"
        out += segment(0xE1, b"Exif\x00\x00" + inner + bytes(300))
    out += segment(0xDB, bytes(65)) + segment(0xC0, bytes([8, 0, 16, 0, 16, 1, 1, 0x11, 0]))
    for scan in range(scans):  # a progressive file: tables and a scan, again and again
        out += segment(0xC4, bytes(29)) + segment(0xDA, bytes([1, 1, 0, 0, 63, 0]))
        out += entropy(scan)
    return out + b"\xff\xff\xd9" + trailing  # a fill byte before the end marker


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(*, trailing: bytes = b"") -> bytes:
    rows = b"".join(b"\x00" + random.Random(row).randbytes(48) for row in range(16))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
        + chunk(b"tEXt", b"Comment\x00hstsync")
        + chunk(b"IDAT", zlib.compress(rows)[:200])
        + chunk(b"IDAT", zlib.compress(rows)[200:])
        + chunk(b"IEND", b"")
        + trailing
    )


def payload(size: int = 60_000) -> bytes:
    """Compressible, but not trivially: a FITS-like mix of text and noise."""
    rng = random.Random(7)
    return b"".join(b"SIMPLE  = T" + rng.randbytes(69) for _ in range(size // 80))


def pieces(data: bytes, seed: int) -> Iterable[bytes]:
    rng = random.Random(seed)
    at = 0
    while at < len(data):
        step = rng.choice([1, 2, 3, 7, 64, 1000, 65536])
        yield data[at : at + step]
        at += step


def fed(name: str, data: bytes, seed: int = 0) -> Verdict:
    check = end_check(name)
    assert check is not None
    for piece in pieces(data, seed):
        check.feed(piece)
    return check.finish()


def cuts(size: int, count: int = 300) -> list[int]:
    """Where to cut a big file: near both ends, and at ``count`` places between."""
    rng = random.Random(size)
    edges = [*range(0, min(64, size)), *range(max(size - 64, 0), size)]
    return sorted({*edges, *(rng.randrange(size) for _ in range(count))})


def assert_never_whole_when_cut(name: str, data: bytes, at: Iterable[int]) -> None:
    for cut in at:
        assert cut < len(data)
        got = verdict(name, data[:cut])
        assert got.whole is False, (cut, got)
        assert fed(name, data[:cut], seed=cut).whole is False, cut


# -- which check ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "format"),
    [
        ("preview.jpg", "JPEG"),
        ("PREVIEW.JPEG", "JPEG"),
        ("o58701010_x2d.png", "PNG"),
        ("j8vg01021_drz.fits.gz", "gzip"),
        ("bundle.tgz", "gzip"),
        ("table.txt.bz2", "bzip2"),
        ("cube.fits.xz", "xz"),
        ("jw01345-o001_asn.json", "JSON"),
        ("handbook.pdf", "PDF"),
    ],
)
def test_a_check_is_chosen_by_the_file_names_suffix(name: str, format: str):
    check = end_check(name)
    assert check is not None and check.name == format


@pytest.mark.parametrize("name", ["o58701010_x2d.fits", "notes.txt", "catalog.cat", "noext"])
def test_formats_without_an_end_have_no_check_and_say_they_cannot_tell(name: str):
    assert end_check(name) is None
    assert verdict(name, b"anything").whole is None


# -- JPEG ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [jpeg(), jpeg(scans=3), jpeg(thumbnail=True), jpeg(trailing=b"\x00" * 100 + b"junk")],
    ids=["baseline", "progressive", "exif-thumbnail", "bytes-after-the-end"],
)
def test_a_whole_jpeg_is_whole_however_it_is_fed(data: bytes):
    assert verdict("p.jpg", data) == Verdict(True)
    for seed in range(5):
        assert fed("p.jpg", data, seed).whole is True


@pytest.mark.parametrize("data", [jpeg(), jpeg(scans=3)], ids=["baseline", "progressive"])
def test_a_jpeg_cut_anywhere_is_never_whole(data: bytes):
    end = data.rindex(b"\xff\xd9")
    assert_never_whole_when_cut("p.jpg", data, range(end + 1))  # up to the marker's last byte


def test_a_jpeg_cut_after_its_thumbnail_is_not_taken_for_whole():
    data = jpeg(thumbnail=True)
    thumbnail_end = data.index(b"\xff\xd9") + 2  # the thumbnail's own end marker
    assert_never_whole_when_cut("p.jpg", data, range(thumbnail_end - 2, thumbnail_end + 400))


def test_a_jpeg_truncated_to_2880_bytes_is_cut_short():
    data = jpeg(scans=3)
    assert len(data) > 2880
    got = verdict("preview.jpg", data[:2880])
    assert got == Verdict(False, "cut short: the JPEG data ends before its end-of-image marker")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<!DOCTYPE html><html>Service unavailable</html>", "not a JPEG file"),
        (b"", "not a JPEG file (empty)"),
        (b"\xff\xd8\x00\x00", "damaged JPEG data"),
        (b"\xff\xd8\xff\xd8", "damaged JPEG data (marker FFD8 out of place)"),
        (b"\xff\xd8\xff\xe0\x00\x01", "damaged JPEG data"),
    ],
)
def test_what_is_not_a_jpeg_is_refused_with_a_reason(data: bytes, reason: str):
    got = verdict("p.jpg", data)
    assert got.whole is False and got.reason.startswith(reason)


# -- PNG -----------------------------------------------------------------------------------


def test_a_whole_png_is_whole_however_it_is_fed():
    for data in (png(), png(trailing=b"after the end")):
        assert verdict("p.png", data) == Verdict(True)
        for seed in range(5):
            assert fed("p.png", data, seed).whole is True


def test_a_png_cut_anywhere_is_never_whole():
    data = png()
    assert_never_whole_when_cut("p.png", data, range(len(data)))


def test_a_damaged_byte_in_a_png_is_found_by_its_chunks_crc():
    data = bytearray(png())
    idat = data.index(b"IDAT") + 10
    data[idat] ^= 0xFF
    got = verdict("p.png", data)
    assert got == Verdict(False, "damaged PNG data (the IDAT chunk's CRC does not match)")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<html>not found</html>", "not a PNG file (no PNG signature)"),
        (b"", "not a PNG file (empty)"),
        (b"\x89PNG\r\n\x1a\n" + chunk(b"IDAT", b"x"), "not a PNG file (IHDR is not its first"),
        (b"\x89PNG\r\n\x1a\n\xff\xff\xff\xffIHDR", "damaged PNG data (a chunk header"),
    ],
)
def test_what_is_not_a_png_is_refused_with_a_reason(data: bytes, reason: str):
    got = verdict("p.png", data)
    assert got.whole is False and got.reason.startswith(reason)


# -- gzip, bzip2, xz -----------------------------------------------------------------------

PACKED = {
    "f.fits.gz": gzip.compress(payload()),
    "f.fits.bz2": bz2.compress(payload()),
    "f.fits.xz": lzma.compress(payload()),
}


@pytest.mark.parametrize("name", list(PACKED))
def test_a_whole_compressed_file_is_whole_however_it_is_fed(name: str):
    assert verdict(name, PACKED[name]) == Verdict(True)
    for seed in range(3):
        assert fed(name, PACKED[name], seed).whole is True


@pytest.mark.parametrize("name", list(PACKED))
def test_a_compressed_file_cut_anywhere_is_never_whole(name: str):
    data = PACKED[name]
    assert_never_whole_when_cut(name, data, cuts(len(data)))


@pytest.mark.parametrize("name", list(PACKED))
def test_a_damaged_byte_in_a_compressed_file_is_found(name: str):
    data = PACKED[name]
    for at in (len(data) // 3, len(data) // 2, len(data) - 6):  # the data, the trailer
        damaged = bytearray(data)
        damaged[at] ^= 0x55
        got = verdict(name, damaged)
        assert got.whole is False and got.reason.startswith("damaged"), (at, got)


def test_gzip_checks_each_members_length_as_well_as_its_crc():
    data = bytearray(gzip.compress(b"0123456789" * 1000))
    data[-1] ^= 0x01  # ISIZE, the last byte
    got = verdict("f.gz", data)
    assert got.whole is False and "member 1" in got.reason


def test_gzip_members_one_after_another_and_zero_padding_are_whole():
    first, second = gzip.compress(b"first " * 5000), gzip.compress(b"second " * 5000)
    assert verdict("f.gz", first + second) == Verdict(True)
    assert fed("f.gz", first + second, seed=3).whole is True
    assert verdict("f.gz", first + bytes(512)) == Verdict(True)  # tar-style padding
    assert_never_whole_when_cut("f.gz", first + second, cuts(len(first + second), 100)[64:])
    got = verdict("f.gz", first + second[:-3])
    assert got.whole is False and got.reason.startswith("cut short")


def test_gzip_bytes_after_the_last_member_are_ignored_as_gzip_ignores_them():
    got = verdict("f.gz", gzip.compress(b"data") + b"trailing garbage")
    assert got.whole is True and "ignored" in got.reason


def test_a_big_gzip_is_checked_without_holding_its_content():
    data = gzip.compress(bytes(200 * 1024 * 1024))  # 200 MiB of zeros: 200 KB packed
    assert verdict("zeros.gz", data).whole is True


@pytest.mark.parametrize("name", list(PACKED))
def test_what_is_not_compressed_data_is_refused(name: str):
    assert verdict(name, b"").whole is False
    got = verdict(name, b"<html>rate limited</html>" * 10)
    assert got.whole is False and got.reason.startswith("damaged")


# -- JSON and PDF --------------------------------------------------------------------------


def test_json_whole_cut_and_what_it_cannot_tell():
    data = json.dumps({"asn_id": "o001", "products": [{"members": list(range(50))}]}).encode()
    assert verdict("x_asn.json", data) == Verdict(True)
    assert fed("x_asn.json", data, seed=1).whole is True
    assert_never_whole_when_cut("x_asn.json", data, range(len(data)))
    assert verdict("x.json", b"12345").whole is None  # a number cut short is a number
    assert verdict("x.json", b"[" + b"0," * (JSON_LIMIT // 2) + b"0]").whole is None
    assert verdict("x.json", b"\xff\xfe{}").whole is False


def test_pdf_needs_its_header_and_its_end_marker():
    data = b"%PDF-1.7\n" + random.Random(1).randbytes(5000) + b"\ntrailer\n%%EOF\n"
    assert verdict("h.pdf", data) == Verdict(True)
    assert fed("h.pdf", data, seed=2).whole is True
    assert_never_whole_when_cut("h.pdf", data, range(len(data) - 7))
    assert verdict("h.pdf", b"<html></html>").whole is False
