"""The documentation cannot drift from the code: README, ``--help`` and the example
configuration are checked against what the program does.

``python tests/test_docs.py --write`` refreshes the README's copy of the example.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from hstsync.archive.validate import FILTER_OPTIONS, TOP_KEYS
from hstsync.cli.parser import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXAMPLE = ROOT / "config.example.toml"
BEGIN, END = "<!-- config.example.toml begin -->", "<!-- config.example.toml end -->"


def example_block() -> str:
    return f"{BEGIN}\n```toml\n{EXAMPLE.read_text().rstrip()}\n```\n{END}"


def readme_with_example(text: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    return pattern.sub(lambda _: example_block(), text)


def subcommands() -> list[str]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(sub.choices)


def test_readme_starts_with_the_demo_and_the_test_command():
    text = README.read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    commands = [line for line in blocks[0].splitlines() if line and not line.startswith("#")]
    assert commands[0].endswith("hstsync demo")
    assert commands[1].endswith("python -m pytest -q")
    # .ci/run runs exactly the README's test command
    assert "python -m pytest -q" in (ROOT / ".ci" / "run").read_text()


def test_readme_lists_every_command():
    text = README.read_text()
    for name in subcommands():
        assert f"`hstsync {name}" in text or f"/ `{name}`" in text, name


def test_every_command_has_help_text():
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {action.dest: action.help for action in sub._choices_actions}
    for name in subcommands():
        assert helps.get(name), name


def test_readme_carries_the_example_configuration_verbatim():
    text = README.read_text()
    assert readme_with_example(text) == text, (
        "README's copy of config.example.toml is stale: run `python tests/test_docs.py --write`"
    )


def test_readme_documents_every_manifest_key():
    text = README.read_text()
    for key in (*TOP_KEYS, *FILTER_OPTIONS):
        assert f"`{key}`" in text or f"`[{key}]`" in text, key


if __name__ == "__main__" and "--write" in sys.argv:
    README.write_text(readme_with_example(README.read_text()))


def test_the_units_documentation_is_the_readme_that_pip_installs():
    import tomllib

    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "README.md" in shipped["data-files"]["share/doc/hstsync"]
    for unit in ("hstsync.service", "hstsync-nightly.service"):
        text = (ROOT / "systemd" / unit).read_text()
        prefix = re.search(r"^ExecStart=(\S+)/bin/hstsync ", text, re.M)
        assert prefix is not None, unit
        assert f"Documentation=file://{prefix.group(1)}/share/doc/hstsync/README.md" in text
