"""What hstsync remembers: requests and products in one SQLite file.

- ``db``: :class:`Store`, composed of ``connection`` (:class:`Connection`: the one
  connection and its transactions) and the records by responsibility:
  ``request_records``, ``product_records``, ``upkeep_records``.
- ``rows``: the row dataclasses callers get back, and rows <-> columns conversion.
- ``request_queries``, ``product_queries``: the statements that write rows (through
  sqlite-utils), ``reads``: those that only read (plain sqlite3), run by the ``Store``
  inside its transactions (with ``schema``, the only SQL).
- ``schema``: tables, triggers, migrations; ``opening``: opening the file, its pragmas
  and the messages when it cannot be opened.
"""

from hstsync.store.db import ProductMark, Store
from hstsync.store.rows import (
    Delisted,
    Facts,
    PlanDiff,
    ProductRow,
    RequestRow,
    RequestSummary,
    utc_now,
)
from hstsync.store.schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "Delisted",
    "Facts",
    "PlanDiff",
    "ProductMark",
    "ProductRow",
    "RequestRow",
    "RequestSummary",
    "Store",
    "utc_now",
]
