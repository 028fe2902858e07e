"""What a request would fetch, before anything is fetched: ``hstsync plan``.

Decisions over resolved products and what the mirror already holds: which files
are present at the catalogue size (and, for ``*.fits``, pass the same content check
as a download: a file of the right size with other content is not "present"), how
many bytes are missing, and whether the mirror's filesystem has room for them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hstsync.errors import CorruptFileError, UnsafePathError
from hstsync.model import Product
from hstsync.transfer.ranges import held_bytes
from hstsync.transfer.verify import verify_file

#: room kept free on the mirror's filesystem beyond what a request needs
HEADROOM = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PlannedFile:
    product: Product
    #: bytes already on disk for it: the whole file, a ``.part``, or nothing
    on_disk: int
    present: bool
    refused: str | None = None

    @property
    def missing(self) -> int:
        if self.present or self.refused or self.product.size is None:
            return 0
        return max(self.product.size - self.on_disk, 0)


@dataclass(frozen=True, slots=True)
class Plan:
    files: tuple[PlannedFile, ...]
    free: int

    @property
    def total(self) -> int:
        return sum(f.product.size or 0 for f in self.files if f.refused is None)

    @property
    def present(self) -> int:
        return sum(1 for f in self.files if f.present)

    @property
    def to_fetch(self) -> int:
        return sum(1 for f in self.files if not f.present and f.refused is None)

    @property
    def missing_bytes(self) -> int:
        return sum(f.missing for f in self.files)

    @property
    def fits(self) -> bool:
        return room_for(self.missing_bytes, self.free)


def room_for(needed: int, free: int) -> bool:
    return needed == 0 or needed + HEADROOM <= free


def free_space(path: Path) -> int:
    """Free bytes on the filesystem that holds (or will hold) ``path``."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def sound(path: Path) -> bool:
    """Whether a file already at its destination may count as the product: the content
    check of a download (``transfer.verify``; FITS files only)."""
    try:
        verify_file(path, path.name)
    except (CorruptFileError, OSError):
        return False
    return True


def plan_files(products: Sequence[Product], mirror: Path) -> Plan:
    files: list[PlannedFile] = []
    for product in products:
        if product.problem is not None:
            files.append(PlannedFile(product, 0, False, refused=product.problem))
            continue
        try:
            dest = mirror / product.relpath()
        except UnsafePathError as exc:
            files.append(PlannedFile(product, 0, False, refused=str(exc)))
            continue
        whole = _size(dest)
        expected = whole if product.size is None else product.size
        if whole is not None and whole == expected and sound(dest):
            files.append(PlannedFile(product, whole, True))
            continue
        part = held_bytes(dest)
        files.append(PlannedFile(product, min(part, expected or 0), False))
    return Plan(tuple(files), free_space(mirror))
