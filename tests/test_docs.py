"""The documentation cannot drift from the code: README, ``--help``, the example
configuration and the pages under ``docs/`` are checked against what the program does
and against each other, and the repository stands alone: no file in it points outside.

``python tests/test_docs.py --write`` refreshes docs/configuration.md's copy of the
example configuration.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from hstsync.archive.validate import FILTER_OPTIONS, TOP_KEYS
from hstsync.cli.parser import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
EXAMPLE = ROOT / "config.example.toml"
BEGIN, END = "<!-- config.example.toml begin -->", "<!-- config.example.toml end -->"

#: Pages linked before they land: written on another branch, merged separately. Remove
#: an entry once its page is in the repository.
PENDING: set[str] = set()

#: Markdown documents whose links, anchors and test names are checked.
MARKDOWN = [README, ROOT / "DEVELOPERS.md", ROOT / "CHANGELOG.md", ROOT / "bench" / "README.md"]


def markdown_files() -> list[Path]:
    return [*MARKDOWN, *sorted(DOCS.glob("*.md"))]


def example_block() -> str:
    return f"{BEGIN}\n```toml\n{EXAMPLE.read_text().rstrip()}\n```\n{END}"


def with_example(text: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    return pattern.sub(lambda _: example_block(), text)


def subcommands() -> list[str]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(sub.choices)


# -- README ----------------------------------------------------------------------------


def test_readme_starts_with_the_demo_and_the_test_command():
    text = README.read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    commands = [line for line in blocks[0].splitlines() if line and not line.startswith("#")]
    assert commands[0].endswith("hstsync demo")
    assert commands[1].endswith("python -m pytest -q")
    # the two commands come before anything else the README says
    assert text.index("```sh") < text.index("\n## ")
    # .ci/run runs exactly the README's test command
    assert "python -m pytest -q" in (ROOT / ".ci" / "run").read_text()


def test_readme_lists_every_command():
    text = README.read_text()
    for name in subcommands():
        assert f"`hstsync {name}" in text or f"/ `{name}`" in text, name


def test_readme_stays_short():
    size = len(README.read_text().encode())
    assert size <= 12 * 1024, (
        f"README.md is {size:,} bytes: keep it to what hstsync is, the two commands, the "
        "tour, the commands and links; detail belongs in docs/"
    )


def test_every_command_has_help_text():
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {action.dest: action.help for action in sub._choices_actions}
    for name in subcommands():
        assert helps.get(name), name


# -- configuration and manifests -------------------------------------------------------


def test_configuration_page_carries_the_example_verbatim():
    text = CONFIGURATION.read_text()
    assert BEGIN in text and END in text
    assert with_example(text) == text, (
        "docs/configuration.md's copy of config.example.toml is stale: "
        "run `python tests/test_docs.py --write`"
    )


def test_every_manifest_key_is_documented():
    page = CONFIGURATION.read_text()
    for key in (*TOP_KEYS, *FILTER_OPTIONS):
        assert f"`{key}`" in page or f"`[{key}]`" in page, key
    readme = README.read_text()
    for key in TOP_KEYS:
        assert f"`{key}" in readme or f"`[{key}]`" in readme, key


# -- the units and what pip installs ---------------------------------------------------


def test_the_units_documentation_is_what_pip_installs():
    import tomllib

    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    files = shipped["data-files"]
    assert "README.md" in files["share/doc/hstsync"]
    assert _covered("docs/deployment.md", files["share/doc/hstsync/docs"])
    for unit in ("hstsync.service", "hstsync-nightly.service"):
        text = (ROOT / "systemd" / unit).read_text()
        prefix = re.search(r"^ExecStart=(\S+)/bin/hstsync ", text, re.M)
        assert prefix is not None, unit
        doc = f"file://{prefix.group(1)}/share/doc/hstsync"
        assert re.search(
            rf"^Documentation={re.escape(doc)}/README\.md {re.escape(doc)}/docs/deployment\.md$",
            text,
            re.M,
        ), unit


def test_every_page_the_readme_links_is_installed_beside_it():
    import tomllib

    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    files = shipped["data-files"]
    for target in _link_targets(README):
        path = target.split("#")[0]
        if not path.endswith(".md"):
            continue
        # installed under the same relative path as in the repository
        where = "/".join(["share/doc/hstsync", *Path(path).parent.parts])
        assert _covered(path, files.get(where, [])), path


def _covered(path: str, patterns: list[str]) -> bool:
    """Whether ``path`` is one of the data-files ``patterns`` (globs allowed)."""
    return any(path == p or ("*" in p and Path(path).match(p)) for p in patterns)


# -- the repository stands alone -------------------------------------------------------

#: What names a file outside the repository: the sibling directory of shared documents,
#: the machine's work tree, and the product contract, field notes and style guide kept
#: there, by file name or by their short names. (Written so that this file does not name
#: them itself.)
OUTSIDE = [
    re.compile(r"\.\./shar[e]d"),
    re.compile(r"/wor[k]/"),
    re.compile(r"\b(?:S[P]EC|N[O]TES)\b|\bS[T]YLE\.md"),
    re.compile(r"hst-download-by-proposal-tutoria[l]"),
]

#: Binary files: no text to read.
BINARY = {".png", ".jpg", ".gz", ".fits", ".pyc", ".db"}
#: Directories that a checkout without git metadata (an unpacked sdist) may hold but that
#: are not the repository's.
NOT_OURS = {
    *(".git", ".venv", ".ci-venv", "build", "__pycache__"),
    *(".hypothesis", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".import_linter_cache"),
}


def repository_files() -> Iterator[Path]:
    """The tracked files (``git ls-files``), or every file under the root where this is
    not a git checkout (the unpacked sdist of .ci/run)."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        for path in sorted(ROOT.rglob("*")):
            parts = set(path.relative_to(ROOT).parts)
            if path.is_file() and not parts & NOT_OURS:
                yield path
        return
    for name in listed.decode().split("\0"):
        if name and (ROOT / name).is_file():
            yield ROOT / name


def test_no_file_names_a_path_outside_the_repository():
    found = []
    for path in repository_files():
        if path.suffix in BINARY:
            continue
        text = path.read_bytes().decode("utf-8", "replace")
        for number, line in enumerate(text.splitlines(), 1):
            if any(pattern.search(line) for pattern in OUTSIDE):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, (
        "these lines point outside the repository; cite docs/design.md instead:\n"
        + "\n".join(found)
    )


# -- links, anchors, cited sections, tests named ---------------------------------------

_CODE_BLOCK = re.compile(r"^```.*?^```", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")


def _link_targets(page: Path) -> list[str]:
    text = _CODE_SPAN.sub("", _CODE_BLOCK.sub("", page.read_text()))
    return [t for t in _LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of a page's headings: lower case, punctuation but ``-``
    and ``_`` dropped, spaces made ``-``; a repeated one gets ``-1``, ``-2``…"""
    text = _CODE_BLOCK.sub("", page.read_text())
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*#*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower().replace("`", "")).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def test_every_relative_link_points_to_a_file_that_exists():
    broken = []
    for page in markdown_files():
        if not page.exists():
            continue
        for target in _link_targets(page):
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            name = dest.relative_to(ROOT).as_posix() if dest.is_relative_to(ROOT) else str(dest)
            if name in PENDING:
                continue
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such section)")
    assert not broken, "\n".join(broken)


def test_the_changelog_and_every_page_in_docs_are_linked_from_the_readme():
    linked = {t.split("#")[0] for t in _link_targets(README)}
    for page in [ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]:
        assert page.relative_to(ROOT).as_posix() in linked, page.name


#: A citation of a section in code or documents: docs/design.md, "Exit codes"
_CITED = re.compile(r"docs/([\w-]+\.md),\s*(?:#:?\s*)?\"([^\"\n]+)\"")


def test_every_section_cited_exists():
    missing = []
    for path in repository_files():
        if path.suffix in BINARY or path == Path(__file__).resolve():
            continue
        for page, section in _CITED.findall(path.read_bytes().decode("utf-8", "replace")):
            target = DOCS / page
            heading = re.compile(rf"^#+\s+{re.escape(section)}\s*$", re.M)
            if not target.exists() or not heading.search(target.read_text()):
                missing.append(f"{path.relative_to(ROOT)}: docs/{page}, {section!r}")
    assert not missing, "\n".join(missing)


def _test_names() -> set[str]:
    names = set()
    for path in (ROOT / "tests").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
    return names


#: a test's name in a document; ``test_x_...`` is a prefix of the names meant
_TEST_NAME = re.compile(r"\b(test_\w+?)(\.\.\.)?(?=[`\s,;:)]|\.py|$)")


def test_every_test_a_document_names_exists():
    names = _test_names()
    missing = []
    for page in [README, ROOT / "DEVELOPERS.md", *sorted(DOCS.glob("*.md"))]:
        for name, prefix in _TEST_NAME.findall(page.read_text()):
            if (ROOT / "tests" / f"{name}.py").exists():
                continue
            if prefix and any(n.startswith(name) for n in names):
                continue
            if name not in names:
                missing.append(f"{page.relative_to(ROOT)}: {name}")
    assert not missing, "\n".join(missing)


if __name__ == "__main__" and "--write" in sys.argv:
    CONFIGURATION.write_text(with_example(CONFIGURATION.read_text()))
