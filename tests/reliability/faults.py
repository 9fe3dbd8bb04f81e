"""Helpers of the reliability suite: the CLI as a child process, memory limits, another user's Python.

Import as `faults` (pytest puts this folder on sys.path).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

#: A Python another local user can run (the test venv's may live under a private home).
SYSTEM_PYTHON = next(
    (p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None
)


def memory_limited(limit_bytes: int) -> Callable[[], None]:
    """A `preexec_fn` that caps a child's address space (so a bomb fails inside the child)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


def run_limited(argv: Sequence[str], limit_bytes: int, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run `argv` under an address-space limit; capture its output."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 120)
    return subprocess.run(list(argv), preexec_fn=memory_limited(limit_bytes), check=False, **kwargs)


def modeldeck(*args: str) -> list[str]:
    """The argv of the `modeldeck` CLI in this interpreter."""
    return [sys.executable, "-c", "import sys; from console.cli import main; sys.exit(main())", *args]
