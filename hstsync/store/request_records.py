"""The store's requests: what each asks for, how it stands, its passes, and the facts
that belong to no one request (files fetched in all, the token's last judgment).

Each method runs one transaction (:mod:`hstsync.store.connection`) of statements from
``request_queries`` (writes) or ``reads``; its docstring is the contract."""

from __future__ import annotations

from collections.abc import Mapping

from hstsync.model import Request, RequestState
from hstsync.store import reads, request_queries
from hstsync.store.connection import Connection
from hstsync.store.rows import Facts, RequestRow, RequestSummary


class RequestRecords(Connection):
    """What the :class:`~hstsync.store.db.Store` records of requests."""

    def upsert_request(self, request: Request, manifest: str) -> RequestRow:
        """Record a parsed manifest; a request whose digest changed is queued afresh."""
        with self._writing(f"record request {request.name}") as db:
            return request_queries.upsert(db, request, manifest)

    def record_invalid(self, name: str, manifest: str, reason: str) -> None:
        """A manifest that could not be parsed: the request is ``invalid`` with the reason.

        Its products, if an earlier version of the manifest listed any, are kept. The
        digest is emptied: it differs from every real one, so the next valid manifest
        of this name, even the same as before, is queued by :meth:`upsert_request`.
        """
        with self._writing(f"record invalid request {name}") as db:
            request_queries.record_invalid(db, name, manifest, reason)

    def set_request_state(
        self,
        name: str,
        state: RequestState,
        last_error: str | None = None,
        *,
        resolved: bool = False,
    ) -> None:
        """Set a request's state and last error; ``resolved`` also stamps ``resolved_at``."""
        with self._writing(f"set the state of request {name}") as db:
            request_queries.set_state(db, self.path, name, state, last_error, resolved=resolved)

    def lookup_failed(self, name: str, error: str) -> RequestRow:
        """A lookup of ``name`` failed: count it and schedule the next one.

        The next lookup comes :func:`~hstsync.model.relookup_delay` after now (2, 4, 8 …
        minutes, at most an hour), not after ``resync_every``. ``last_error`` says why.
        """
        with self._writing(f"record the failed lookup of {name}") as db:
            return request_queries.lookup_failed(db, self.path, name, error)

    def retry_lookups(self, request: str | None = None) -> int:
        """Failed lookups (of ``request``, or all) due at once; how many."""
        with self._writing("put failed lookups back in the queue") as db:
            return request_queries.retry_lookups(db, request)

    def note_new_files(self, name: str) -> None:
        """Stamp ``last_new_files``: a pass just brought new or changed files."""
        with self._writing(f"record new files of request {name}") as db:
            request_queries.note_new_files(db, name)

    def note_planned(self, name: str, planned: int) -> None:
        """A complete lookup of ``name`` found ``planned`` observations planned, not yet
        executed (``RequestRow.planned``)."""
        with self._writing(f"record the planned observations of request {name}") as db:
            request_queries.note_planned(db, self.path, name, planned)

    def note_error(self, name: str, error: str) -> None:
        """Say why a request is held up, its state unchanged (a lookup that retries)."""
        with self._writing(f"record the error of request {name}") as db:
            request_queries.note_error(db, self.path, name, error)

    def begin_pass(self, name: str) -> None:
        """Stamp the start of a pass of ``name`` (``pass_started``)."""
        with self._writing(f"record the pass of request {name}") as db:
            request_queries.begin_pass(db, self.path, name)

    def end_pass(self, name: str, *, new_files: int = 0, new_bytes: int = 0) -> RequestRow:
        """A pass of ``name`` has settled: stamp ``pass_ended``, and ``mirrored_at`` when
        it left the request ``done`` without an error; ``new_files`` (of ``new_bytes``)
        it brought stamp ``last_new_files`` and add to the fetched-files facts."""
        with self._writing(f"record the end of the pass of request {name}") as db:
            return request_queries.end_pass(db, self.path, name, new_files, new_bytes)

    def facts(self) -> Facts:
        with self._reading("read the store's facts") as conn:
            return reads.facts(conn)

    def set_facts(self, **values: str | int | None) -> None:
        """Write some of :class:`Facts`'s fields (by name)."""
        unknown = set(values) - {f for f in Facts.__dataclass_fields__}
        if unknown:
            raise ValueError(f"not facts: {', '.join(sorted(unknown))}")
        with self._writing("record the store's facts") as db:
            request_queries.set_facts(db, values)

    def get_request(self, name: str) -> RequestRow | None:
        with self._reading(f"read request {name}") as conn:
            return reads.get_request(conn, name)

    def list_requests(self) -> list[RequestRow]:
        with self._reading("list requests") as conn:
            return reads.all_requests(conn)

    def remove_request(self, name: str) -> None:
        """Forget a request and its products (files on disk are left to the caller)."""
        with self._writing(f"remove request {name}") as db:
            request_queries.remove(db, name)

    def summaries(self, name: str | None = None) -> list[RequestSummary]:
        """Each request (or only ``name``) with its product counts and bytes."""
        with self._reading("summarise requests") as conn:
            return reads.summaries(conn, name)

    def finish_verify(self, request: str, verdicts: Mapping[str, int]) -> None:
        """A verify of ``request`` ended now, with these counts of its verdicts."""
        with self._writing(f"record the verify of {request}") as db:
            request_queries.finish_verify(db, request, verdicts)
