"""``hstsync export-curl``: a shell script of resumable curl commands.

For users who must fetch elsewhere, like MAST's own bundle script, but resumable
(``-C -``), failing loudly (``--fail``, ``set -e`` is not used so one bad file does not
stop the rest; the script exits non-zero if any failed), and never carrying a token:
exclusive-access files read ``$MAST_API_TOKEN`` from the environment at run time and
hand it to curl on its standard input (``-H @-``, curl 7.55 or later), never on its
command line, where ``ps`` would show it to every user of the machine.

Run again, it skips every file already complete (its size equals the catalogue's):
``curl -C -`` on a complete file asks for a range past its end, the server answers
416, and ``--fail`` would count every finished file as failed.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from hstsync.model import Product

#: POSIX sh: ``fetch DEST SIZE URL [token]``; ``printf`` is the shell's own, so the
#: token is never an argument of any process
_FETCH = r"""size_of() { if [ -f "$1" ]; then wc -c < "$1" | tr -d ' '; else echo -1; fi; }
get() {
  if [ "$3" != token ]; then
    curl --fail --location --retry 5 --create-dirs -C - -o "$1" "$2"
  elif [ -z "${MAST_API_TOKEN:-}" ]; then
    echo "needs MAST_API_TOKEN: $1" >&2; return 1
  else
    printf 'Authorization: token %s\n' "$MAST_API_TOKEN" |
      curl --fail --location --retry 5 --create-dirs -C - -H @- -o "$1" "$2"
  fi
}
fetch() {
  dest=$1; size=$2; url=$3
  if [ "$size" -ge 0 ] && [ "$(size_of "$dest")" = "$size" ]; then
    skipped=$((skipped + 1)); return 0
  fi
  if get "$dest" "$url" "${4:-}" &&
    { [ "$size" -lt 0 ] || [ "$(size_of "$dest")" = "$size" ]; }; then
    fetched=$((fetched + 1))
  else
    echo "failed: $dest" >&2; failed=$((failed + 1))
  fi
}"""


def curl_script(request: str, products: Sequence[tuple[Product, str]]) -> str:
    """``products``: each product with its download URL."""
    lines = [
        "#!/bin/sh",
        f"# hstsync export-curl: request {request}, {len(products)} files.",
        "# Run it in the directory that should hold mastDownload/; run it again to resume:",
        "# files already complete (by size) are skipped, partial ones resumed (curl -C -).",
        "# Exclusive-access files need MAST_API_TOKEN in the environment.",
        "failed=0; fetched=0; skipped=0",
        _FETCH,
    ]
    for product, url in products:
        dest = str(product.relpath())
        auth = "" if product.is_public else " token"
        size = -1 if product.size is None else product.size  # -1: unknown, not checked
        lines.append(f"fetch {shlex.quote(dest)} {size} {shlex.quote(url)}{auth}")
    lines += [
        'echo "$fetched fetched, $skipped already complete, $failed failed" >&2',
        'if [ "$failed" -ne 0 ]; then exit 1; fi',
        "",
    ]
    return "\n".join(lines)
