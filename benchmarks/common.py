"""Pieces both benchmarks share: finding the `registry` package, and a quiet MLflow."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def unshadow() -> None:
    """Run as `python benchmarks/X.py`, this folder heads sys.path and its registry.py would be
    imported as `registry`; drop the folder so `import registry` finds the package."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    cached = sys.modules.get("registry")
    if cached is not None and Path(getattr(cached, "__file__", "") or "").resolve().parent == here:
        del sys.modules["registry"]


def quiet_mlflow() -> bool:
    """Silence MLflow (and its telemetry); False if MLflow is not importable."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return False
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="mlflow")
    return True


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def quick_options(description: str | None, argv: list[str] | None) -> argparse.Namespace:
    """The options of a benchmark that only has `--quick` (its docstring as the help), with `registry`
    importable (`unshadow`)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args(argv)
    unshadow()
    return options
