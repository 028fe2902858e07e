"""Package faces that load on first use.

A package's ``__init__`` names what other packages may use (``__all__``). Importing a
module runs its package's ``__init__`` first, so a face that imported everything it
names would make ``hstsync status`` load the archive client and the downloader just
to reach one small module. :func:`lazy` builds the module-level ``__getattr__`` and
``__dir__`` (PEP 562) that import a name's module when the name is first asked for;
the ``__init__`` also imports the names under ``TYPE_CHECKING``, so type checkers and
readers see where each comes from.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence


def lazy(
    package: str, modules: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public names live in ``modules``
    (a submodule's name relative to the package -> the names it gives the face)."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__
