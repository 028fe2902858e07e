"""The SQLite record: real database files in tmp_path, other processes, no mocks."""

from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import hstsync
from hstsync.errors import StoreError
from hstsync.model import Product, ProductState, Request, RequestState, counts_of
from hstsync.store import SCHEMA_VERSION, Facts, PlanDiff, Store

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
REPO = Path(hstsync.__file__).resolve().parent.parent


def product(n: int, *, size: int = 1000, rights: str = "PUBLIC", obs: str = "o1") -> Product:
    return Product(
        data_uri=f"mast:HST/product/f{n}.fits",
        obs_collection="HST",
        obs_id=obs,
        filename=f"f{n}.fits",
        size=size,
        obsid=str(2000 + n),
        product_type="SCIENCE",
        calib_level=2,
        data_rights=rights,
    )


def uri(n: int) -> str:
    return f"mast:HST/product/f{n}.fits"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "hstsync.sqlite"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    with Store(db) as s:
        yield s


def seeded(store: Store, name: str = "7291", count: int = 3) -> list[Product]:
    store.upsert_request(Request(name, ("7291",)), f"/requests/{name}.toml")
    products = [product(n) for n in range(count)]
    store.replace_products(name, products)
    return products


def state_of(store: Store, name: str, data_uri: str) -> ProductState:
    return next(r.state for r in store.products(name) if r.product.data_uri == data_uri)


# -- the file ---------------------------------------------------------------------------


def test_schema_is_created_with_its_version_in_missing_directories(db: Path) -> None:
    with Store(db) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.list_requests() == []
    conn = sqlite3.connect(db)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert {"requests", "products"} <= tables
    assert {"products_request_uri", "products_request_state"} <= indexes


def test_reopening_keeps_rows(db: Path) -> None:
    with Store(db) as store:
        seeded(store)
    with Store(db) as store:
        assert [r.name for r in store.list_requests()] == ["7291"]
        assert len(store.products("7291")) == 3


def test_database_and_wal_files_are_private_whatever_the_umask(db: Path) -> None:
    old = os.umask(0)
    try:
        with Store(db) as store:
            seeded(store)
            for suffix in ("", "-wal", "-shm"):
                mode = stat.S_IMODE(os.stat(f"{db}{suffix}").st_mode)
                assert mode == 0o600, (suffix, oct(mode))
    finally:
        os.umask(old)


def test_a_database_from_a_newer_hstsync_is_refused(db: Path) -> None:
    Store(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store(db)
    with pytest.raises(StoreError, match="newer"):
        Store.open_readonly(db)


# -- requests ---------------------------------------------------------------------------


def test_new_request_is_queued(store: Store) -> None:
    row = store.upsert_request(Request("7291", ("7291", "8000")), "/r/7291.toml")
    assert row.state is RequestState.QUEUED
    assert row.proposal_ids == ("7291", "8000")
    assert row.manifest == "/r/7291.toml"
    assert row.last_error is None and row.resolved_at is None
    assert TIMESTAMP.match(row.created) and row.updated == row.created
    assert store.get_request("7291") == row


def test_same_digest_keeps_the_row_and_its_state(store: Store) -> None:
    request = Request("7291", ("7291",))
    store.upsert_request(request, "/r/7291.toml")
    store.set_request_state("7291", RequestState.DONE, resolved=True)
    before = store.get_request("7291")
    after = store.upsert_request(request, "/r/7291.toml")
    assert after == before
    assert after.state is RequestState.DONE


def test_changed_digest_queues_again_and_clears_the_error(store: Store) -> None:
    store.upsert_request(Request("7291", ("7291",)), "/r/7291.toml")
    store.set_request_state("7291", RequestState.INCOMPLETE, "2 failed", resolved=True)
    changed = Request("7291", ("7291", "9000"), filters={"extension": "fits"})
    row = store.upsert_request(changed, "/r/7291.toml")
    assert row.state is RequestState.QUEUED
    assert row.last_error is None
    assert row.digest == changed.digest()
    assert row.proposal_ids == ("7291", "9000")


def test_set_request_state_stamps_resolved_only_when_asked(store: Store) -> None:
    store.upsert_request(Request("7291", ("7291",)), "/r/7291.toml")
    store.set_request_state("7291", RequestState.RESOLVING)
    assert store.get_request("7291").resolved_at is None  # type: ignore[union-attr]
    store.set_request_state("7291", RequestState.INCOMPLETE, "1 failed", resolved=True)
    row = store.get_request("7291")
    assert row is not None
    assert row.state is RequestState.INCOMPLETE and row.last_error == "1 failed"
    assert row.resolved_at is not None and TIMESTAMP.match(row.resolved_at)
    with pytest.raises(StoreError, match="no request named"):
        store.set_request_state("nope", RequestState.DONE)


def test_record_invalid_then_a_fixed_manifest_is_queued(store: Store) -> None:
    store.record_invalid("typo", "/r/typo.toml.invalid", "line 2: expected '='")
    row = store.get_request("typo")
    assert row is not None
    assert row.state is RequestState.INVALID and row.last_error == "line 2: expected '='"
    fixed = store.upsert_request(Request("typo", ("7291",)), "/r/typo.toml")
    assert fixed.state is RequestState.QUEUED and fixed.last_error is None


def test_a_manifest_broken_then_restored_unchanged_is_queued_again(store: Store) -> None:
    products = seeded(store)
    store.set_request_state("7291", RequestState.DONE, resolved=True)
    store.record_invalid("7291", "/r/7291.toml.invalid", "not TOML")
    assert store.get_request("7291").state is RequestState.INVALID  # type: ignore[union-attr]
    assert len(store.products("7291")) == len(products)
    again = store.upsert_request(Request("7291", ("7291",)), "/r/7291.toml")
    assert again.state is RequestState.QUEUED and again.last_error is None


def test_remove_request_takes_its_products(store: Store) -> None:
    seeded(store, "a")
    seeded(store, "b")
    store.remove_request("a")
    assert [r.name for r in store.list_requests()] == ["b"]
    assert store.products("a") == []
    assert len(store.products("b")) == 3


# -- products ---------------------------------------------------------------------------


def test_replace_products_diff(store: Store) -> None:
    store.upsert_request(Request("7291", ("7291",)), "/r/7291.toml")
    first = store.replace_products("7291", [product(n) for n in range(5)])
    assert first == PlanDiff(new=5, changed=0, unchanged=0, removed=0)
    assert {r.state for r in store.products("7291")} == {ProductState.PENDING}

    store.mark("7291", uri(0), ProductState.DONE, attempts=1)  # unchanged: stays done
    store.mark("7291", uri(1), ProductState.DONE, attempts=1)  # size changes
    store.mark("7291", uri(2), ProductState.AUTH_REQUIRED, error="401", attempts=1)
    diff = store.replace_products(
        "7291",
        [
            product(0),
            product(1, size=2000),
            product(2, rights="EXCLUSIVE_ACCESS"),
            product(3),
            product(9),
        ],
    )
    assert diff == PlanDiff(new=1, changed=2, unchanged=2, removed=1)
    rows = {r.product.data_uri: r for r in store.products("7291")}
    assert set(rows) == {uri(0), uri(1), uri(2), uri(3), uri(9)}
    assert rows[uri(0)].state is ProductState.DONE and rows[uri(0)].attempts == 1
    for changed in (uri(1), uri(2)):
        row = rows[changed]
        assert (row.state, row.bytes_done, row.attempts, row.last_error) == (
            ProductState.PENDING,
            0,
            0,
            None,
        )
    assert rows[uri(1)].product.size == 2000
    assert rows[uri(2)].product.data_rights == "EXCLUSIVE_ACCESS"
    assert rows[uri(9)].state is ProductState.PENDING


def test_replace_products_round_trips_every_field(store: Store) -> None:
    store.upsert_request(Request("7291", ("7291",)), "/r/7291.toml")
    original = Product(
        "mast:HST/product/x.fits", "HST", "o5", "x.fits", 42, "99", "PREVIEW", None, "PUBLIC", "d"
    )
    store.replace_products("7291", [original, original])  # listed twice: taken once
    [row] = store.products("7291")
    assert row.product == original and row.request == "7291"


def test_unsafe_catalogue_names_are_stored_not_refused(store: Store) -> None:
    store.upsert_request(Request("7291", ("7291",)), "/r/7291.toml")
    hostile = Product("mast:HST/product/evil", "HST", "..", "../../etc/passwd", 10)
    assert store.replace_products("7291", [hostile]).new == 1
    assert store.products("7291")[0].product == hostile


def test_replace_products_for_an_unknown_request_is_an_error(store: Store) -> None:
    with pytest.raises(StoreError, match="no request named"):
        store.replace_products("ghost", [product(1)])


def test_products_are_ordered_and_filtered_by_state(store: Store) -> None:
    store.upsert_request(Request("7291", ("7291",)), "/r/7291.toml")
    store.replace_products("7291", [product(3, obs="o2"), product(2, obs="o1"), product(1)])
    store.mark("7291", uri(2), ProductState.FAILED, error="boom")
    assert [r.product.filename for r in store.products("7291")] == [
        "f1.fits",
        "f2.fits",
        "f3.fits",
    ]
    failed = store.products("7291", {ProductState.FAILED, ProductState.AUTH_REQUIRED})
    assert [r.product.filename for r in failed] == ["f2.fits"]
    assert store.products("7291", []) == []


def test_mark_counts_attempts_keeps_and_clears_errors_and_stamps_done(store: Store) -> None:
    seeded(store)
    store.mark("7291", uri(0), ProductState.DOWNLOADING)
    store.mark("7291", uri(0), ProductState.FAILED, bytes_done=300, error="reset", attempts=1)
    store.mark("7291", uri(0), ProductState.DOWNLOADING)  # a retry in flight keeps the error
    [row] = [r for r in store.products("7291") if r.product.data_uri == uri(0)]
    assert (row.state, row.bytes_done, row.attempts, row.last_error) == (
        ProductState.DOWNLOADING,
        300,
        1,
        "reset",
    )
    store.mark("7291", uri(0), ProductState.DONE, attempts=1)
    [row] = [r for r in store.products("7291") if r.product.data_uri == uri(0)]
    assert (row.state, row.bytes_done, row.attempts, row.last_error) == (
        ProductState.DONE,
        1000,
        2,
        None,
    )
    conn = sqlite3.connect(store.path)
    done_at = conn.execute("SELECT done_at FROM products WHERE data_uri = ?", [uri(0)]).fetchone()
    conn.close()
    assert TIMESTAMP.match(done_at[0])
    with pytest.raises(StoreError, match="no product"):
        store.mark("7291", "mast:HST/product/none", ProductState.DONE)


def test_record_progress_writes_a_batch_and_spares_done_products(store: Store) -> None:
    seeded(store, count=4)
    store.mark("7291", uri(3), ProductState.DONE)
    store.record_progress(
        {
            ("7291", uri(0)): 10,
            ("7291", uri(1)): 20,
            ("7291", uri(3)): 5,
            ("7291", "mast:HST/product/gone"): 7,
        }
    )
    done = {r.product.data_uri: r.bytes_done for r in store.products("7291")}
    assert done == {uri(0): 10, uri(1): 20, uri(2): 0, uri(3): 1000}
    store.record_progress({})


def test_summaries_count_and_add_up_like_the_rows(store: Store) -> None:
    seeded(store, "a", count=6)
    seeded(store, "b", count=2)
    store.upsert_request(Request("empty", ("1",)), "/r/empty.toml")
    store.mark("a", uri(0), ProductState.DONE)
    store.mark("a", uri(1), ProductState.FAILED, bytes_done=100, error="x")
    store.mark("a", uri(2), ProductState.AUTH_REQUIRED, error="401")
    store.mark("a", uri(3), ProductState.DOWNLOADING)
    store.record_progress({("a", uri(3)): 250})
    summaries = {s.request.name: s for s in store.summaries()}
    assert list(summaries) == ["a", "b", "empty"]
    a = summaries["a"]
    assert a.counts == counts_of(r.state for r in store.products("a"))
    assert (a.counts.total, a.counts.done, a.counts.failed) == (6, 1, 1)
    assert (a.counts.pending, a.counts.auth_required) == (3, 1)
    assert a.bytes_total == 6000
    assert a.bytes_done == 1000 + 100 + 250
    assert summaries["b"].counts.pending == 2 and summaries["b"].bytes_done == 0
    assert summaries["empty"].counts.total == 0 and summaries["empty"].bytes_total == 0
    [only] = store.summaries("b")
    assert only == summaries["b"]
    assert store.summaries("nope") == []


def test_recover_interrupted_resets_work_in_flight(store: Store) -> None:
    seeded(store, "a")
    seeded(store, "b")
    store.upsert_request(Request("c", ("1",)), "/r/c.toml")
    store.set_request_state("a", RequestState.DOWNLOADING)
    store.set_request_state("b", RequestState.RESOLVING)
    store.set_request_state("c", RequestState.DONE)
    store.mark("a", uri(0), ProductState.DOWNLOADING)
    store.mark("a", uri(1), ProductState.DOWNLOADING)
    store.record_progress({("a", uri(1)): 400})
    store.mark("a", uri(2), ProductState.DONE)
    assert store.recover_interrupted() == (2, 2)
    assert [r.state for r in store.products("a")] == [
        ProductState.PENDING,
        ProductState.PENDING,
        ProductState.DONE,
    ]
    assert store.products("a")[1].bytes_done == 400  # the .part file is resumed
    states = {r.name: r.state for r in store.list_requests()}
    assert states == {"a": RequestState.QUEUED, "b": RequestState.QUEUED, "c": RequestState.DONE}
    assert store.recover_interrupted() == (0, 0)


def test_retry_puts_failed_and_auth_required_back(store: Store) -> None:
    seeded(store, "a")
    seeded(store, "b")
    for name in ("a", "b"):
        store.mark(name, uri(0), ProductState.FAILED, error="reset", attempts=1)
        store.mark(name, uri(1), ProductState.AUTH_REQUIRED, error="401")
        store.mark(name, uri(2), ProductState.DONE)
        store.set_request_state(name, RequestState.INCOMPLETE, "1 failed", resolved=True)
    assert store.retry("a") == 2
    a = {r.product.data_uri: r for r in store.products("a")}
    assert a[uri(0)].state is ProductState.PENDING and a[uri(0)].last_error is None
    assert a[uri(1)].state is ProductState.PENDING
    assert a[uri(2)].state is ProductState.DONE
    request = store.get_request("a")
    assert request is not None and request.state is RequestState.QUEUED
    assert request.last_error is None
    assert store.get_request("b").state is RequestState.INCOMPLETE  # type: ignore[union-attr]
    assert store.retry() == 2
    assert store.get_request("b").state is RequestState.QUEUED  # type: ignore[union-attr]
    assert store.retry() == 0


# -- reading and writing side by side ---------------------------------------------------


def test_open_readonly_on_a_missing_file_says_to_run_first(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "hstsync.sqlite"
    with pytest.raises(StoreError, match=r"no database at .* yet — run `hstsync run` first"):
        Store.open_readonly(missing)
    assert not missing.parent.exists()


def test_open_readonly_on_something_else_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "hstsync.sqlite"
    junk.write_bytes(b"this is not sqlite, just some bytes " * 100)
    with pytest.raises(StoreError, match="not an hstsync database"):
        Store.open_readonly(junk)
    with pytest.raises(StoreError, match=str(junk)):
        Store(junk)


@pytest.mark.unprivileged
def test_open_readonly_explains_missing_permissions(db: Path) -> None:
    Store(db).close()
    db.chmod(0)
    try:
        with pytest.raises(StoreError, match="permission denied"):
            Store.open_readonly(db)
    finally:
        db.chmod(0o600)
    db.parent.chmod(0o500)  # the daemon is stopped: no -shm, and none can be created
    try:
        with pytest.raises(StoreError, match="-shm"):
            Store.open_readonly(db)
    finally:
        db.parent.chmod(0o700)


def test_readonly_store_reads_when_the_daemon_is_stopped_and_refuses_writes(db: Path) -> None:
    with Store(db) as store:
        seeded(store)
    with Store.open_readonly(db) as reader:
        [summary] = reader.summaries()
        assert summary.counts.total == 3
        with pytest.raises(StoreError, match="read-only"):
            reader.mark("7291", uri(0), ProductState.DONE)


WRITER = """
import sys, time
from pathlib import Path
from hstsync.model import ProductState
from hstsync.store.db import Store

store = Store(Path(sys.argv[1]))
print("ready", flush=True)
writes, deadline = 0, time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    n = writes % 50
    uri = f"mast:HST/product/f{n}.fits"
    store.mark("7291", uri, ProductState.DOWNLOADING, attempts=1)
    store.record_progress({("7291", uri): writes})
    store.mark("7291", uri, ProductState.DONE)
    writes += 1
    time.sleep(0.001)  # a downloader writes often, but not back to back
store.close()
print(writes, flush=True)
"""


def test_readonly_store_reads_while_another_process_writes(db: Path) -> None:
    with Store(db) as store:
        seeded(store, count=50)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), "1.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    reads = 0
    with Store.open_readonly(db) as reader, Store(db) as other_writer:
        while child.poll() is None:
            [summary] = reader.summaries()
            assert summary.counts.total == 50
            assert len(reader.products("7291")) == 50
            other_writer.mark("7291", uri(reads % 50), ProductState.PENDING)
            reads += 1
    out, err = child.communicate(timeout=10)
    assert child.returncode == 0, err
    assert int(out.strip()) > 10
    assert reads > 10


def test_two_writers_on_one_file_interleave_without_locking_errors(db: Path) -> None:
    with Store(db) as store:
        seeded(store, count=20)
    errors: list[BaseException] = []
    start = threading.Barrier(2, timeout=10)

    def write(offset: int) -> None:
        try:
            with Store(db) as store:  # its own connection, as another process would have
                start.wait()
                for i in range(150):
                    n = (i + offset) % 20
                    store.mark("7291", uri(n), ProductState.DOWNLOADING, attempts=1)
                    store.record_progress({("7291", uri(n)): i})
                    store.set_request_state("7291", RequestState.DOWNLOADING)
                    store.summaries()
        except BaseException as exc:
            start.abort()  # never leave the other thread waiting
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k * 10,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Store(db) as store:
        assert sum(r.attempts for r in store.products("7291")) == 300


# -- tallies: status reads per-request counts kept by triggers ---------------------------

AGGREGATE = """
    SELECT request, state, COUNT(*) AS n, SUM(MAX(size, 0)) AS total,
           SUM(CASE WHEN state = 'done' THEN MAX(size, 0)
                    ELSE MIN(MAX(bytes_done, 0), MAX(size, 0)) END) AS done
    FROM products GROUP BY request, state
"""


def tallies_and_rows(db: Path) -> tuple[set[tuple[object, ...]], set[tuple[object, ...]]]:
    with sqlite3.connect(db) as conn:
        kept = set(conn.execute("SELECT request, state, n, total, done FROM tallies WHERE n > 0"))
        counted = set(conn.execute(AGGREGATE))
    return kept, counted


def test_tallies_follow_every_kind_of_product_write(store: Store, db: Path) -> None:
    seeded(store, "a", count=6)
    seeded(store, "b", count=3)
    store.mark("a", uri(0), ProductState.DONE)
    store.mark("a", uri(1), ProductState.FAILED, bytes_done=100, error="x")
    store.mark("a", uri(2), ProductState.DOWNLOADING)
    store.record_progress({("a", uri(2)): 250})
    # a re-resolution that drops one product, changes a size and adds one
    store.replace_products("b", [product(0, size=5000), product(1), product(7)])
    store.retry("a")
    store.recover_interrupted()
    kept, counted = tallies_and_rows(db)
    assert kept == counted
    store.remove_request("a")
    kept, counted = tallies_and_rows(db)
    assert kept == counted and {row[0] for row in kept} == {"b"}


def undo_version_8(conn: sqlite3.Connection) -> None:
    """The database as a version-7 hstsync left it: no collection, no planned count."""
    for column in ("collection", "planned"):
        conn.execute(f"ALTER TABLE requests DROP COLUMN {column}")


def undo_version_7(conn: sqlite3.Connection) -> None:
    """The database as a version-6 hstsync left it: no hashes, validators, versions."""
    conn.execute("DROP INDEX products_relpath")
    conn.execute("DROP TABLE orphans")
    for column in ("sha256", "etag", "last_modified", "prvversion", "verified", "supersede"):
        conn.execute(f"ALTER TABLE products DROP COLUMN {column}")
    for column in ("last_verify", "verify_summary"):
        conn.execute(f"ALTER TABLE requests DROP COLUMN {column}")


def undo_version_6(conn: sqlite3.Connection) -> None:
    """The database as schema version 5 had it: no pass times, no facts."""
    for column in ("pass_started", "pass_ended", "mirrored_at"):
        conn.execute(f"ALTER TABLE requests DROP COLUMN {column}")
    conn.execute("DROP TABLE facts")


def drop_tallies(conn: sqlite3.Connection) -> None:
    for trigger in ("tally_insert", "tally_delete", "tally_update"):
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("DROP TABLE tallies")


def test_a_version_2_database_gains_tallies_that_match_its_rows(db: Path) -> None:
    with Store(db) as store:
        seeded(store, "a", count=4)
        store.mark("a", uri(0), ProductState.DONE)
    with sqlite3.connect(db) as conn:  # as an hstsync of schema version 2 left it
        undo_version_8(conn)
        undo_version_7(conn)
        undo_version_6(conn)
        drop_tallies(conn)
        conn.execute("ALTER TABLE requests DROP COLUMN last_new_files")
        conn.execute("DROP INDEX products_request_order")
        conn.execute("ALTER TABLE products DROP COLUMN seen")
        conn.execute("ALTER TABLE requests DROP COLUMN resolution")
        conn.execute("PRAGMA user_version = 2")
    with Store.open_readonly(db) as store:  # status beside a daemon not yet upgraded
        [summary] = store.summaries("a")
        assert (summary.counts.total, summary.counts.done, summary.bytes_done) == (4, 1, 1000)
    with Store(db) as store:
        [summary] = store.summaries("a")
        assert (summary.counts.total, summary.counts.done, summary.bytes_done) == (4, 1, 1000)
    kept, counted = tallies_and_rows(db)
    assert kept == counted


def test_a_version_1_database_gains_the_lookup_and_size_columns(db: Path) -> None:
    with Store(db) as store:
        store.upsert_request(Request("r", ("1",)), "r.toml")
        store.replace_products("r", [product(1, size=1000)])
    conn = sqlite3.connect(db)
    undo_version_8(conn)
    undo_version_7(conn)
    undo_version_6(conn)
    drop_tallies(conn)
    conn.execute("DROP INDEX products_request_order")
    for table, column in [
        ("products", "seen"),
        ("requests", "resolution"),
        ("requests", "last_new_files"),
        ("requests", "next_lookup"),
        ("requests", "lookup_failures"),
        ("products", "catalogue_size"),
        ("products", "size_note"),
        ("products", "problem"),
    ]:
        conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    with Store(db) as store:
        assert store.schema_version == SCHEMA_VERSION == 8
        [row] = store.products("r")
        assert row.catalogue_size == row.product.size == 1000
        assert store.get_request("r").lookup_failures == 0  # type: ignore[union-attr]
        # the same catalogue again changes nothing
        assert store.replace_products("r", [product(1, size=1000)]).unchanged == 1


def test_server_size_survives_a_catalogue_that_stays_wrong(store: Store) -> None:
    store.upsert_request(Request("r", ("1",)), "r.toml")
    wrong = product(1, size=1000)
    store.replace_products("r", [wrong])
    store.mark("r", wrong.data_uri, ProductState.DONE, size=1234, size_note="server sent 1234")

    diff = store.replace_products("r", [wrong])

    [row] = store.products("r")
    assert diff.unchanged == 1
    assert row.state is ProductState.DONE and row.bytes_done == 1234
    assert (row.product.size, row.catalogue_size, row.size_note) == (1234, 1000, "server sent 1234")
    # a catalogue that changes its mind starts the product over, at its new size
    store.replace_products("r", [product(1, size=2000)])
    [row] = store.products("r")
    assert (row.state, row.product.size, row.size_note) == (ProductState.PENDING, 2000, None)


def test_unknown_catalogue_size_is_stored_as_unknown(store: Store) -> None:
    store.upsert_request(Request("r", ("1",)), "r.toml")
    unknown = Product("mast:HST/product/u.fits", "HST", "o1", "u.fits", None)
    store.replace_products("r", [unknown])
    [row] = store.products("r")
    assert row.product.size is None and row.catalogue_size is None
    store.mark("r", unknown.data_uri, ProductState.DONE, size=5760)
    store.replace_products("r", [unknown])
    [row] = store.products("r")
    assert (row.state, row.product.size) == (ProductState.DONE, 5760)


def test_a_version_4_database_resolved_again_keeps_what_is_still_listed(db: Path) -> None:
    with Store(db) as store:
        store.upsert_request(Request("r", ("1",)), "r.toml")
        store.replace_products("r", [product(1), product(2), product(3)])
        store.mark("r", uri(1), ProductState.DONE)
    with sqlite3.connect(db) as conn:  # as an hstsync of schema version 4 left it
        undo_version_8(conn)
        undo_version_7(conn)
        undo_version_6(conn)
        conn.execute("DROP INDEX products_request_order")
        conn.execute("ALTER TABLE products DROP COLUMN seen")
        conn.execute("ALTER TABLE requests DROP COLUMN resolution")
        conn.execute("PRAGMA user_version = 4")

    with Store(db) as store:
        diff = store.replace_products("r", [product(1), product(2)])
        assert (diff.unchanged, diff.removed) == (2, 1)
        states = {row.product.data_uri: row.state for row in store.products("r")}
        assert states == {uri(1): ProductState.DONE, uri(2): ProductState.PENDING}


def test_a_version_5_database_gains_pass_times_and_facts(db: Path) -> None:
    with Store(db) as store:
        store.upsert_request(Request("r", ("1",)), "r.toml")
        store.replace_products("r", [product(1)])
    with sqlite3.connect(db) as conn:  # as an hstsync of schema version 5 left it
        undo_version_8(conn)
        undo_version_7(conn)
        undo_version_6(conn)
        conn.execute("PRAGMA user_version = 5")

    with Store.open_readonly(db) as store:  # status beside a daemon not yet upgraded
        row = store.get_request("r")
        assert row is not None and row.mirrored_at is None and row.pass_ended is None
        assert store.facts() == Facts()
    with Store(db) as store:
        store.begin_pass("r")
        store.mark("r", uri(1), ProductState.DONE)
        store.set_request_state("r", RequestState.DONE, resolved=True)
        row = store.end_pass("r", new_files=1, new_bytes=1000)
        assert row.mirrored_at == row.pass_ended and row.pass_started is not None
        assert (store.facts().fetched_files, store.facts().fetched_bytes) == (1, 1000)
        assert store.schema_version == SCHEMA_VERSION


def test_only_a_pass_that_leaves_everything_done_stamps_mirrored(store: Store) -> None:
    store.upsert_request(Request("r", ("1",)), "r.toml")
    store.set_request_state("r", RequestState.DONE, resolved=True)
    mirrored = store.end_pass("r").mirrored_at
    assert mirrored is not None

    store.set_request_state("r", RequestState.DONE, "last re-sync failed: HTTP 503")
    assert store.end_pass("r").mirrored_at == mirrored
    store.set_request_state("r", RequestState.INCOMPLETE, "1 failed")
    assert store.end_pass("r").mirrored_at == mirrored
    # a manifest that asks for something else has not been mirrored yet
    store.upsert_request(Request("r", ("2",)), "r.toml")
    assert store.get_request("r").mirrored_at is None  # type: ignore[union-attr]
    # the counters only grow
    store.end_pass("r", new_files=2, new_bytes=10)
    store.end_pass("r", new_files=1, new_bytes=5)
    assert (store.facts().fetched_files, store.facts().fetched_bytes) == (3, 15)


def test_a_version_6_database_gains_hashes_validators_and_versions(db: Path) -> None:
    with Store(db) as store:
        store.upsert_request(Request("r", ("1",)), "r.toml")
        store.replace_products("r", [product(1), product(2)])
        store.mark("r", uri(1), ProductState.DONE)
    with sqlite3.connect(db) as conn:  # as an hstsync of schema version 6 left it
        undo_version_8(conn)
        undo_version_7(conn)
        conn.execute("PRAGMA user_version = 6")

    with Store(db) as store:
        assert store.schema_version == SCHEMA_VERSION
        done = {row.product.data_uri: row for row in store.products("r")}[uri(1)]
        # landed before hashes were kept: it gets one at its next verify
        assert (done.state, done.sha256, done.verified, done.supersede) == (
            ProductState.DONE,
            None,
            None,
            False,
        )
        store.mark("r", uri(2), ProductState.DONE, sha256="ab" * 32, etag='"e"')
        again = {row.product.data_uri: row for row in store.products("r")}[uri(2)]
        assert (again.sha256, again.etag) == ("ab" * 32, '"e"') and again.verified


def test_a_version_7_database_gains_each_requests_collection_and_planned_count(
    db: Path,
) -> None:
    with Store(db) as store:
        store.upsert_request(Request("r", ("1",)), "r.toml")
        store.replace_products("r", [product(1)])
    with sqlite3.connect(db) as conn:  # as an hstsync of schema version 7 left it
        undo_version_8(conn)
        conn.execute("PRAGMA user_version = 7")

    with Store.open_readonly(db) as store:  # status beside a daemon not yet upgraded
        row = store.get_request("r")
        assert row is not None and (row.collection, row.planned) == ("HST", 0)
    with Store(db) as store:
        assert store.schema_version == SCHEMA_VERSION
        row = store.get_request("r")
        # every request before was an HST one, and is the same request still
        assert row is not None and (row.collection, row.planned) == ("HST", 0)
        assert store.upsert_request(Request("r", ("1",)), "r.toml").digest == row.digest
        store.upsert_request(Request("j", ("01345",), collection="JWST"), "j.toml")
        store.note_planned("j", 2)
        row = store.get_request("j")
        assert row is not None and (row.collection, row.planned) == ("JWST", 2)


def test_a_resolution_recorded_in_batches_removes_only_at_its_end(store: Store) -> None:
    store.upsert_request(Request("r", ("1",)), "r.toml")
    store.replace_products("r", [product(n) for n in range(4)])
    stamp = store.begin_resolution("r")

    diff, rows = store.record_batch("r", [product(1), product(9)], stamp)
    assert (diff.new, diff.unchanged) == (1, 1)
    assert {row.product.data_uri for row in rows} == {uri(1), uri(9)}
    # half-way (a lookup that fails here): nothing is removed, and the products the
    # resolution has not reached yet are what an earlier one listed
    assert len(store.products("r")) == 5
    unseen = store.product_pages("r", unseen_by=stamp, page=2)
    assert {row.product.data_uri for rows in unseen for row in rows} == {
        uri(0),
        uri(2),
        uri(3),
    }

    store.record_batch("r", [product(2)], stamp)
    assert store.end_resolution("r", stamp).removed == 2
    assert {row.product.data_uri for row in store.products("r")} == {uri(1), uri(2), uri(9)}


def test_a_batch_hands_back_its_rows_exactly_as_stored(store: Store) -> None:
    # new rows are not read back after their insert: what they hold must be what a
    # read gives, odd cells included (no size, a refused path, a problem, no rights)
    store.upsert_request(Request("r", ("1",)), "r.toml")
    store.replace_products("r", [product(1), product(2)])
    store.mark("r", uri(1), ProductState.DONE)
    odd = [
        dataclasses.replace(product(3), size=None, calib_level=None, data_rights=""),
        dataclasses.replace(product(4), obs_id="../escape"),
        dataclasses.replace(product(5), problem="its size is not a number ('n/a')"),
    ]
    stamp = store.begin_resolution("r")

    diff, rows = store.record_batch("r", [product(1), product(2, size=5), *odd], stamp)

    assert (diff.new, diff.changed, diff.unchanged) == (3, 1, 1)
    stored = {row.product.data_uri: row for row in store.products("r")}
    assert len(rows) == 5
    for row in rows:
        assert row == stored[row.product.data_uri]


def test_product_pages_read_every_product_once_in_list_order(store: Store) -> None:
    store.upsert_request(Request("r", ("1",)), "r.toml")
    store.replace_products("r", [product(n, obs=f"o{n % 3}") for n in range(25)])

    pages = list(store.product_pages("r", page=4))

    assert [len(page) for page in pages] == [4, 4, 4, 4, 4, 4, 1]
    assert [row for page in pages for row in page] == store.products("r")
