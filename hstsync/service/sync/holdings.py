"""What the mirror holds: the looking that feeds :func:`hstsync.service.sync.planner.plan`.

Reads only, except :func:`reject`: the size of each product's file under its final
name and of its ``.part`` (:func:`sizes_on_disk`), the content check of a file already in
place (:func:`content_problem`, the same check as a download: ``transfer.verify``),
and the free space of the mirror's filesystem. :func:`plan_files` is ``hstsync
plan``'s whole survey; the mirroring pass does the same steps around its fetching
(``service.sync.mirror``), setting a file that fails its check aside to ``FILE.rejected``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from hstsync.errors import CorruptFileError
from hstsync.model import Product
from hstsync.service.sync.planner import Action, Holding, Plan, PlannedFile, plan, refusal
from hstsync.transfer import file_size, held_bytes, needs_verification, verify_file

log = logging.getLogger(__name__)


def free_space(path: Path) -> int:
    """Free bytes on the filesystem that holds (or will hold) ``path``."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def sizes_on_disk(products: Iterable[Product], mirror: Path) -> dict[str, Holding]:
    """Each fetchable product's file and ``.part`` sizes, by dataURI (no content check)."""
    holdings: dict[str, Holding] = {}
    for product in products:
        if refusal(product) is not None:
            continue
        dest = mirror / product.relpath()
        whole = file_size(dest)
        # a file of the catalogue's size is complete whatever its .part holds (the
        # planner never looks at it then): a nightly re-sync stats one path, not three
        complete = whole is not None and whole == product.size
        holdings[product.data_uri] = Holding(whole, 0 if complete else held_bytes(dest))
    return holdings


def needs_check(planned: PlannedFile) -> bool:
    """Whether a file is "present" only once its content is checked: one found in place
    but not recorded done (a done file was checked when it was fetched)."""
    return (
        planned.action is Action.RECORD
        and planned.dest is not None
        and needs_verification(planned.dest.name)
    )


def content_problem(dest: Path) -> str | None:
    """Why the file at ``dest`` is not the product, or None when it passes the content
    check of a download. A file that cannot be read is not judged (logged, None)."""
    try:
        verify_file(dest, dest.name)
    except CorruptFileError as exc:
        return str(exc)
    except OSError as exc:
        log.warning("cannot read %s (%s)", dest, exc)
    return None


def with_problems(holdings: dict[str, Holding], problems: dict[str, str]) -> dict[str, Holding]:
    """The holdings, with the content check's verdicts (by dataURI) written in."""
    merged = dict(holdings)
    for uri, why in problems.items():
        merged[uri] = dataclasses.replace(merged[uri], corrupt=why)
    return merged


def reject(dest: Path) -> Path:
    """Move a file that is not the product aside to ``FILE.rejected`` (never deleted:
    it may be someone's); the transfer then writes the product in its place."""
    aside = dest.with_name(dest.name + ".rejected")
    os.replace(dest, aside)
    return aside


def plan_files(
    products: Sequence[Product],
    mirror: Path,
    sizes_sent: Callable[[list[str]], dict[str, int]] | None = None,
) -> Plan:
    """``hstsync plan``: look, plan, check the files found in place, plan again.

    Nothing is recorded or moved: a file that fails its check is only "to fetch".
    ``sizes_sent`` (``Store.sizes_sent``, when there is a database): what the pass
    knows of files the catalogue gives the wrong size for, so that ``plan`` says what a
    pass would do.
    """
    holdings = sizes_on_disk(products, mirror)
    free = free_space(mirror)
    sizes = odd_sizes(products, holdings, sizes_sent) if sizes_sent is not None else {}
    first = plan(products, mirror, holdings, free=free, sizes=sizes)
    problems = {
        f.product.data_uri: why
        for f in first.files
        if needs_check(f) and f.dest is not None and (why := content_problem(f.dest)) is not None
    }
    if not problems:
        return first
    return plan(products, mirror, with_problems(holdings, problems), free=free, sizes=sizes)


def odd_sizes(
    products: Sequence[Product],
    holdings: Mapping[str, Holding],
    sizes_sent: Callable[[list[str]], dict[str, int]],
) -> dict[str, int]:
    """For products whose file in place has another size than the catalogue says, the
    size a server sent for that file (another request may have fetched it, the server
    winning): by dataURI. Only those are asked for, so a re-sync asks for none."""
    odd = {
        str(p.relpath()): p.data_uri
        for p in products
        if (held := holdings.get(p.data_uri)) is not None
        and held.whole is not None
        and held.whole != p.size
    }
    if not odd:
        return {}
    return {odd[path]: size for path, size in sizes_sent(list(odd)).items()}
