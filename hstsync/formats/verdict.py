"""What a format check says (:class:`Verdict`), and what a check is (:class:`EndCheck`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

#: decompressed bytes produced per step (and dropped): bounds the memory a check uses
STEP = 1 << 20


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a file's format says about its bytes.

    ``whole`` is True when the format's end is there and its checks pass, False when
    the file is cut short, damaged or not of its format at all (``reason`` says which),
    None when the format cannot tell (``reason`` says why).
    """

    whole: bool | None
    reason: str = ""


WHOLE = Verdict(True)


class EndCheck(Protocol):
    """A format's end check: :meth:`feed` the bytes in order, then :meth:`finish`."""

    #: the format's name, for messages ("JPEG")
    name: str

    def feed(self, data: bytes | bytearray | memoryview) -> None: ...

    def finish(self) -> Verdict: ...


def cut_short(name: str, what: str) -> Verdict:
    return Verdict(False, f"cut short: the {name} data ends before {what}")
