"""File bodies the emulator serves: deterministic, random-access, valid FITS.

Owns the bytes of every product. A body is a pure function of ``(dataURI, size,
style, provenance)``:
any byte range can be computed without generating the file, so the server streams
files of many gigabytes with bounded memory, and a test can ask for the exact
bytes it should have received.

When ``size`` is a multiple of 2880 and at least 5760, the body is a valid FITS file:
one 2880-byte primary header (BITPIX=8, NAXIS=1, NAXIS1=size-2880, FILENAME, ORIGIN,
DATASUM, CHECKSUM) and then the data. Other sizes get the data pattern alone.

The body's :class:`~hstsync.emulator.quirks.BodyStyle` picks other real-world
shapes: FITS without checksum cards; FITS whose header astropy warns about but
reads (NUL padding after END, a lower-case keyword, a value with no space before
its comment slash, a long string continued over CONTINUE cards); and a
JPEG-framed preview (SOI, JFIF APP0, a scan, EOI) of any size of at least 32 bytes;
and plain text (the JWST pipeline's ``_asn.json`` and ``_cat.ecsv``): a JSON object
or an ECSV table when the file name says so and the size allows, letters otherwise.

A :class:`Provenance` says how the file was made, as the archive's pipelines write it
into the primary header: ``DATE``, ``CAL_VER`` and reference-file keywords
(``BIASFILE``/``FLATFILE`` for HST, ``CRDS_CTX``/``R_FLAT`` for JWST). Without one
(``None``), a body is exactly what the emulator always served. Its ``generation``
counts reprocessings: each generation has data of its own (another pattern), a new
``DATE`` and new reference files, and valid checksums again, at the same size.

The data repeat a pseudo-random pattern of :data:`PATTERN_LENGTH` bytes, a prime, so
the pattern never lines up with FITS blocks or power-of-two chunk sizes: a body
shifted by any number of bytes no longer compares equal.

The pieces, each its own module: the data (:mod:`~hstsync.emulator.fits.pattern`),
the checksum arithmetic (:mod:`~hstsync.emulator.fits.checksum`), the FITS primary
header and :class:`Provenance` (:mod:`~hstsync.emulator.fits.header`), the other
formats' framing (:mod:`~hstsync.emulator.fits.framing`), and a :class:`Body` put
together from them, made and kept by :class:`Bodies`
(:mod:`~hstsync.emulator.fits.bodies`). The server and the tests ask this package
for them.
"""

from hstsync.emulator.fits.bodies import Bodies, Body
from hstsync.emulator.fits.header import BLOCK, Provenance
from hstsync.emulator.fits.pattern import PATTERN_LENGTH, Pattern

__all__ = ["BLOCK", "PATTERN_LENGTH", "Bodies", "Body", "Pattern", "Provenance"]
