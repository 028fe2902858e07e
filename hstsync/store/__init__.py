"""What hstsync remembers: requests and products in one SQLite file.

- ``db``: :class:`Store`, the only place that speaks SQL about rows.
- ``schema``: tables, migrations, connection opening and pragmas.
"""

from hstsync.store.db import ProductRow, RequestRow, RequestSummary, Store

__all__ = ["ProductRow", "RequestRow", "RequestSummary", "Store"]
