"""What hstsync remembers: requests and products in one SQLite file.

- ``db``: :class:`Store`, the connection and its transactions; the public face.
- ``rows``: the row dataclasses callers get back, and rows <-> columns conversion.
- ``request_queries``, ``product_queries``: the statements that write rows (through
  sqlite-utils), ``reads``: those that only read (plain sqlite3), run by the ``Store``
  inside its transactions (with ``db`` and ``schema``, the only SQL).
- ``schema``: tables, migrations, connection opening and pragmas.
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
