"""Where the registry lives: its home, database URL and artifact directory (no database code, so
reading them imports nothing heavy)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from registry.errors import DatabaseError


def default_home() -> Path:
    """`$MODELDECK_HOME`, else the platform's user data directory for modeldeck."""
    env = os.environ.get("MODELDECK_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("modeldeck", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Where the registry lives: its home, database URL and artifact directory."""

    home: Path
    db_url: str
    artifacts_dir: Path
    db_timeout: float = 15.0

    @classmethod
    def from_env(cls, home: str | Path | None = None, db_url: str | None = None) -> Settings:
        """Settings from arguments, falling back to the `MODELDECK_*` environment variables."""
        home_path = Path(home).expanduser() if home is not None else default_home()
        url = db_url or os.environ.get("MODELDECK_DB_URL") or f"sqlite:///{home_path / 'registry.db'}"
        url = with_psycopg(url)
        artifacts = os.environ.get("MODELDECK_ARTIFACTS_DIR")
        raw_timeout = os.environ.get("MODELDECK_DB_TIMEOUT", "15")
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise DatabaseError(f"MODELDECK_DB_TIMEOUT={raw_timeout!r} is not a number of seconds") from None
        return cls(
            home=home_path,
            db_url=url,
            artifacts_dir=Path(artifacts).expanduser() if artifacts else home_path / "artifacts",
            db_timeout=timeout,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    @property
    def display_url(self) -> str:
        """The database URL with any password hidden."""
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", self.db_url)


def with_psycopg(url: str) -> str:
    """`postgres://` and `postgresql://` (what Heroku, libpq and most hosts hand out) name PostgreSQL
    without a driver; modeldeck talks to it through psycopg 3, so they mean `postgresql+psycopg://`."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return url
