"""The one rule that makes outside text safe to show (``hstsync.text.printable``)."""

from __future__ import annotations

import os

import pytest

from hstsync.text import printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("o58701010_x2d.fits", "o58701010_x2d.fits"),
        ("naïve café", "naïve café"),  # accents are text, kept
        ("evil\x1b]0;title\x07", "evil\\x1b]0;title\\x07"),  # a window title
        ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),  # clear screen
        ("one\ntwo\r\n", "one\\ntwo\\r\\n"),  # a forged log line
        ("tab\there", "tab\\there"),
        ("\x9b31m", "\\x9b31m"),  # C1: CSI in one byte
        ("\x7f", "\\x7f"),
        ("abc\u202edcba", "abc\\u202edcba"),  # a right-to-left override
        ("\U000e0001", "\\U000e0001"),  # a language tag, not printable
        (os.fsdecode(b"bad\xff.toml"), "bad\\xff.toml"),  # a file name's undecodable byte
        ("\ud800", "\\ud800"),  # a lone surrogate from a JSON escape
    ],
)
def test_printable_escapes_what_a_terminal_would_act_on_and_keeps_the_rest(
    raw: str, shown: str
) -> None:
    assert printable(raw) == shown
    assert printable(raw).isprintable()
    printable(raw).encode("utf-8")  # always writable
