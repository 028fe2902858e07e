"""The SQLite record of requests and products: the :class:`Store`.

A :class:`Store` is one connection to the database file (read-write, or read-only for
``status``: :mod:`hstsync.store.connection`) and, by responsibility, what it records:
requests (:mod:`~hstsync.store.request_records`), products
(:mod:`~hstsync.store.product_records`) and the mirror's upkeep
(:mod:`~hstsync.store.upkeep_records`). Each public method opens one transaction and
hands a write the sqlite-utils ``Database`` (a statement of ``request_queries.py`` or
``product_queries.py``) and a read the plain connection (a statement of ``reads.py``).
Those, ``schema.py`` (tables, migrations, opening the file) and the record classes are
the only code that speaks SQL about rows. Callers see the frozen dataclasses of
``rows.py``, never dicts; each method's docstring is the contract.
"""

from __future__ import annotations

from hstsync.store.product_records import ProductMark, ProductRecords
from hstsync.store.request_records import RequestRecords
from hstsync.store.upkeep_records import UpkeepRecords

__all__ = ["ProductMark", "Store"]


class Store(RequestRecords, ProductRecords, UpkeepRecords):
    """One connection to the database file and every record it keeps."""
