"""The daemon's Prometheus metrics, read from the database at every scrape.

Per request: its products by state, bytes, state, whether it is green
(``hstsync_request_ok``, :func:`~hstsync.service.daemon.status.is_ok`), when it was
last fully mirrored and when its passes ran, its failed lookups in a row. For the
process: its last pass over any request, its heartbeat, the files and bytes passes have
fetched, and how the archive last judged the MAST token. ``docs/operating.md`` has
example alert rules. Nothing is cached between scrapes; a database that cannot be read
is ``hstsync_up 0`` and nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hstsync.errors import StoreError
from hstsync.model import RequestState
from hstsync.service.daemon.runlock import heartbeat_of
from hstsync.service.daemon.status import is_ok, moment
from hstsync.store import Facts, RequestSummary, Store

log = logging.getLogger(__name__)

#: the product counts of the status document (docs/design.md, "The status document"),
#: one sample each per request
PRODUCT_COUNTS = ("done", "failed", "pending", "auth_required", "withdrawn")


class StoreCollector(Collector):
    """Reads the store at every scrape; nothing is cached between scrapes."""

    def __init__(self, database: Path, resync_every: float) -> None:
        self.database = database
        self.resync_every = resync_every

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("hstsync_up", "1 if the status endpoint could read the database")
        try:
            with Store.open_readonly(self.database) as store:
                summaries = store.summaries()
                facts = store.facts()
        except StoreError as exc:
            log.warning("metrics: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from request_metrics(summaries)
        yield from staleness_metrics(summaries, datetime.now(UTC), self.resync_every)
        yield from process_metrics(summaries, facts, heartbeat_of(self.database))


def request_metrics(summaries: Sequence[RequestSummary]) -> list[Metric]:
    """Per-request gauges: products by state, bytes done and in all, the request's state."""
    products = GaugeMetricFamily(
        "hstsync_request_products",
        "Products of a request by state (pending includes transfers in flight)",
        labels=["request", "state"],
    )
    done_bytes = GaugeMetricFamily(
        "hstsync_request_done_bytes", "Bytes of a request's products on disk", labels=["request"]
    )
    size_bytes = GaugeMetricFamily(
        "hstsync_request_size_bytes", "Bytes of all of a request's products", labels=["request"]
    )
    state = GaugeMetricFamily(
        "hstsync_request_state",
        "1 for the state a request is in, 0 for the others",
        labels=["request", "state"],
    )
    for s in summaries:
        name = s.request.name
        for count in PRODUCT_COUNTS:
            products.add_metric([name, count], getattr(s.counts, count))
        done_bytes.add_metric([name], s.bytes_done)
        size_bytes.add_metric([name], s.bytes_total)
        for value in RequestState:
            state.add_metric([name, str(value)], 1 if s.request.state is value else 0)
    return [products, done_bytes, size_bytes, state]


def staleness_metrics(
    summaries: Sequence[RequestSummary], now: datetime, resync_every: float
) -> list[Metric]:
    """Per request: green or not, and when its passes ran; a time never reached (a
    request never mirrored) has no sample."""
    ok = GaugeMetricFamily(
        "hstsync_request_ok",
        "1 when the request's last finished pass mirrored every product it lists, its lookup "
        "answered, within two re-sync intervals; else 0",
        labels=["request"],
    )
    times = {
        "mirrored_at": GaugeMetricFamily(
            "hstsync_request_last_success_timestamp_seconds",
            "When the request was last fully mirrored (the end of that pass), Unix time",
            labels=["request"],
        ),
        "pass_started": GaugeMetricFamily(
            "hstsync_request_last_pass_start_timestamp_seconds",
            "When the request's last pass started, Unix time",
            labels=["request"],
        ),
        "pass_ended": GaugeMetricFamily(
            "hstsync_request_last_pass_end_timestamp_seconds",
            "When the request's last pass ended, Unix time",
            labels=["request"],
        ),
    }
    verified = GaugeMetricFamily(
        "hstsync_request_last_verify_timestamp_seconds",
        "When the request's files were last verified (by the daemon or `hstsync verify`)",
        labels=["request"],
    )
    found = GaugeMetricFamily(
        "hstsync_request_verify_files",
        "What the request's last verify found of its files, by verdict (same, changed, "
        "missing, damaged, withdrawn, unchecked, not mirrored)",
        labels=["request", "found"],
    )
    failures = GaugeMetricFamily(
        "hstsync_request_lookup_failures",
        "Lookups of the request that failed in a row (0 once one succeeds)",
        labels=["request"],
    )
    for s in summaries:
        row = s.request
        ok.add_metric([row.name], 1 if is_ok(row, now, resync_every) else 0)
        for column, family in times.items():
            stamp = getattr(row, column)
            if stamp is not None:
                family.add_metric([row.name], moment(stamp).timestamp())
        failures.add_metric([row.name], row.lookup_failures)
        if row.last_verify is not None:
            verified.add_metric([row.name], moment(row.last_verify).timestamp())
        for verdict, n in (row.verify_summary or {}).items():
            found.add_metric([row.name, verdict], n)
    return [ok, *times.values(), failures, verified, found]


#: the token states ``hstsync_token_state`` has a sample for (``Facts.token_state``)
TOKEN_STATES = ("none", "accepted", "expiring", "expired", "refused", "unknown")


def process_metrics(
    summaries: Sequence[RequestSummary], facts: Facts, heartbeat: float | None
) -> list[Metric]:
    """What belongs to no one request: the last pass over any, the run's heartbeat,
    what passes have fetched, and how the archive last judged the MAST token."""
    found: list[Metric] = []
    for column, name, what in (
        ("pass_started", "hstsync_last_pass_start_timestamp_seconds", "started"),
        ("pass_ended", "hstsync_last_pass_end_timestamp_seconds", "ended"),
    ):
        stamps = [getattr(s.request, column) for s in summaries]
        family = GaugeMetricFamily(name, f"When the last pass of any request {what}, Unix time")
        if known := [stamp for stamp in stamps if stamp is not None]:
            family.add_metric([], moment(max(known)).timestamp())
        found.append(family)
    beat = GaugeMetricFamily(
        "hstsync_heartbeat_timestamp_seconds",
        "When the running hstsync last touched its run lock (every 10 s), Unix time",
    )
    if heartbeat is not None:
        beat.add_metric([], heartbeat)
    files = CounterMetricFamily(
        "hstsync_fetched_files", "Files passes brought (new or changed) since the database began"
    )
    files.add_metric([], facts.fetched_files)
    size = CounterMetricFamily(
        "hstsync_fetched_bytes", "Bytes of the files passes brought since the database began"
    )
    size.add_metric([], facts.fetched_bytes)
    token = GaugeMetricFamily(
        "hstsync_token_state",
        "1 for how the archive last judged the MAST token (none: there is none), 0 for the "
        "others; all 0 before it was first checked",
        labels=["state"],
    )
    for state in TOKEN_STATES:
        token.add_metric([state], 1 if facts.token_state == state else 0)
    expiry = GaugeMetricFamily(
        "hstsync_token_expiry_timestamp_seconds",
        "When the archive says the MAST token expires, Unix time (where it says so)",
    )
    if facts.token_expires:
        expiry.add_metric([], moment(facts.token_expires).timestamp())
    return [*found, beat, files, size, token, expiry]
