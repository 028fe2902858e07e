"""What keeping the mirror true records: each file's content and validators as a verify
finds them, which files are due for a verify, and what the archive (or a removed
request) no longer lists: withdrawn products and orphans.

Each method runs one transaction (:mod:`hstsync.store.connection`) of statements from
``product_queries`` (writes) or ``reads``; its docstring is the contract."""

from __future__ import annotations

from collections.abc import Sequence

from hstsync.store import product_queries, reads
from hstsync.store.connection import Connection
from hstsync.store.rows import ProductRow


class UpkeepRecords(Connection):
    """What the :class:`~hstsync.store.db.Store` records of the mirror's upkeep."""

    def record_content(
        self,
        request: str,
        data_uri: str,
        *,
        sha256: str | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        verified: bool = False,
    ) -> None:
        """What a verify learned of a product's file in place: its hash (a file landed
        before hashes were kept), the validators the archive sends for it now, and
        (``verified``, or with a hash) that it is the archive's as of now."""
        with self._writing(f"record what verify found of {data_uri}") as db:
            product_queries.record_content(
                db, request, data_uri, sha256, etag, last_modified, verified=verified
            )

    def due_for_verify(
        self, request: str, before: str, share: int, recent: str
    ) -> list[ProductRow]:
        """``request``'s files to verify now, oldest check first: those last checked
        (or landed) before ``before``, and at least ``share`` of the oldest, none of
        them checked (or landed) since ``recent``."""
        with self._reading(f"read what of {request} to verify") as conn:
            return reads.due_for_verify(conn, request, before, share, recent)

    def orphans(self) -> list[tuple[str, int]]:
        """Files mirrored for requests since removed that no request lists now:
        ``(relpath, size)``."""
        with self._reading("read the orphaned files") as conn:
            return reads.orphans(conn)

    def withdrawn(self, request: str | None = None) -> list[ProductRow]:
        """Products the archive (or their manifest) no longer lists, files kept."""
        with self._reading("read the withdrawn products") as conn:
            return reads.withdrawn(conn, request)

    def owned_elsewhere(self, relpath: str, request: str) -> bool:
        """Whether a request other than ``request`` lists a product at ``relpath``."""
        with self._reading(f"read who lists {relpath}") as conn:
            return reads.owned_elsewhere(conn, relpath, request)

    def forget(self, request: str, data_uri: str) -> None:
        """Delete one product row (a withdrawn one, once its file is pruned)."""
        with self._writing(f"forget {data_uri} of {request}") as db:
            db.table("products").delete_where("request = ? AND data_uri = ?", [request, data_uri])

    def forget_orphan(self, relpath: str) -> None:
        with self._writing(f"forget the orphan {relpath}") as db:
            db.table("orphans").delete_where("relpath = ?", [relpath])

    def sizes_sent(self, relpaths: Sequence[str]) -> dict[str, int]:
        """For files at these paths, the size a server sent where it differs from what a
        catalogue said (a done product of any request with a size note)."""
        with self._reading("read the sizes servers sent") as conn:
            return reads.sizes_sent(conn, relpaths)
