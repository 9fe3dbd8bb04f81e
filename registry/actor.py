"""Who does a change: `user@host`, recorded with every ledger event (no database code here, so the
supervisor client can name its caller without importing the registry core)."""

from __future__ import annotations

import getpass
import socket


def current_actor() -> str:
    """`user@host` of this process, recorded with every event."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
