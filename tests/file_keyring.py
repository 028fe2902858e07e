"""A keyring backend for tests: a JSON file, never the desktop's keyring.

In process: ``keyring.set_keyring(FileKeyring(path))``. In a subprocess:
``PYTHON_KEYRING_BACKEND=file_keyring.FileKeyring``, ``PYTHONPATH`` holding this
directory, and ``HSTSYNC_TEST_KEYRING`` naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from jaraco.classes import properties
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class FileKeyring(KeyringBackend):
    @properties.classproperty
    def priority(cls) -> float:
        # keyring instantiates every backend class it knows of when it looks for the
        # best one: this one must never be picked unless a test asked for it.
        if "HSTSYNC_TEST_KEYRING" not in os.environ:
            raise RuntimeError("a test keyring, for tests only")
        return 1.0

    def __init__(self, path: Path | None = None) -> None:
        super().__init__()
        self._path = path

    @property
    def path(self) -> Path:
        return self._path or Path(os.environ["HSTSYNC_TEST_KEYRING"])

    def _load(self) -> dict[str, str]:
        try:
            data: dict[str, str] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return data

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\t{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}\t{username}"] = password
        self.path.write_text(json.dumps(data))

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if data.pop(f"{service}\t{username}", None) is None:
            raise PasswordDeleteError("no such password")
        self.path.write_text(json.dumps(data))
