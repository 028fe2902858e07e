"""``hstsync export-curl``: a shell script of resumable curl commands.

For users who must fetch elsewhere, like MAST's own bundle script, but resumable
(``-C -``), failing loudly (``--fail``, ``set -e`` is not used so one bad file does not
stop the rest; the script exits non-zero if any failed), and never carrying a token:
exclusive-access files read ``$MAST_API_TOKEN`` from the environment at run time.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from hstsync.model import Product


def curl_script(request: str, products: Sequence[tuple[Product, str]]) -> str:
    """``products``: each product with its download URL."""
    lines = [
        "#!/bin/sh",
        f"# hstsync export-curl: request {request}, {len(products)} files.",
        "# Run it in the directory that should hold mastDownload/; run it again to resume.",
        "# Exclusive-access files need MAST_API_TOKEN in the environment.",
        "failed=0",
    ]
    for product, url in products:
        dest = str(product.relpath())
        auth = "" if product.is_public else ' -H "Authorization: token ${MAST_API_TOKEN:?}"'
        lines.append(
            f"curl --fail --location --retry 5 --create-dirs -C -{auth} "
            f"-o {shlex.quote(dest)} {shlex.quote(url)} || failed=$((failed + 1))"
        )
    lines += [
        'if [ "$failed" -ne 0 ]; then echo "$failed file(s) failed" >&2; exit 1; fi',
        "",
    ]
    return "\n".join(lines)
