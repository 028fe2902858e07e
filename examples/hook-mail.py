#!/usr/bin/env python3
"""An ``[hooks] on_change`` hook that mails a summary of the pass (stdlib only).

    [hooks]
    on_change = "/usr/bin/python3 /opt/hstsync/examples/hook-mail.py"

Settings come from the environment (``Environment=`` lines in the systemd unit):
  HSTSYNC_MAIL_TO     recipients, comma-separated (required)
  HSTSYNC_MAIL_FROM   sender (default: hstsync@<this host>)
  HSTSYNC_SMTP_HOST   SMTP server (default: localhost:25); "sendmail" = /usr/sbin/sendmail -t
``--dry-run`` prints the message instead of sending it. Errors go to stderr and the
exit status, which hstsync logs.
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary import body, subject


def main() -> int:
    doc = json.load(sys.stdin)
    msg = EmailMessage()
    msg["Subject"] = subject(doc)
    msg["From"] = os.environ.get("HSTSYNC_MAIL_FROM", f"hstsync@{socket.getfqdn()}")
    msg["To"] = os.environ.get("HSTSYNC_MAIL_TO", "")
    msg.set_content(body(doc))
    if "--dry-run" in sys.argv:
        print(msg)
        return 0
    if not msg["To"]:
        print("HSTSYNC_MAIL_TO is not set: nobody to tell", file=sys.stderr)
        return 2
    host = os.environ.get("HSTSYNC_SMTP_HOST", "localhost")
    if host == "sendmail":
        subprocess.run(["/usr/sbin/sendmail", "-t", "-oi"], input=msg.as_bytes(), check=True)
        return 0
    with smtplib.SMTP(host, timeout=30) as smtp:
        smtp.send_message(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
