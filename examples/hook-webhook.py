#!/usr/bin/env python3
"""An ``[hooks] on_change`` hook that posts a summary to a chat webhook (stdlib only).

    [hooks]
    on_change = "/usr/bin/python3 /opt/hstsync/examples/hook-webhook.py"

HSTSYNC_WEBHOOK_URL (required) is an https URL of an incoming webhook: Slack,
Mattermost and Rocket.Chat take ``{"text": ...}`` as sent here; for Microsoft Teams or
Discord change ``payload`` (Discord wants "content"). ``--dry-run`` prints the payload.
Keep the URL out of the configuration file if it is a secret: set it with
``Environment=`` or ``EnvironmentFile=`` in the unit.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary import body


def main() -> int:
    doc = json.load(sys.stdin)
    payload = {"text": body(doc, limit=20)}
    if "--dry-run" in sys.argv:
        print(json.dumps(payload, indent=2))
        return 0
    url = os.environ.get("HSTSYNC_WEBHOOK_URL", "")
    if not url.startswith("https://"):
        print("HSTSYNC_WEBHOOK_URL must be set to an https:// URL", file=sys.stderr)
        return 2
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        if answer.status >= 300:
            print(f"the webhook answered HTTP {answer.status}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
