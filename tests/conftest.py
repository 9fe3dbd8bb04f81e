"""Shared fixtures: a registry on SQLite and on a real PostgreSQL server, and small fitted models.

The suite runs in parallel by default (pyproject's addopts: pytest-xdist, `--dist=loadgroup`). Tests
that share a module-scoped fixture (a running supervisor, model servers, a registered home) are kept
on one worker (`pytest_collection_modifyitems` below), so each such fixture is built once, not once
per worker; run one file serially with `-n0`.

PostgreSQL comes from `MODELDECK_TEST_PG_URL` (set by `.ci/run`), else from `.ci/postgres.sh
--no-install` when Debian's package is installed here. Without a server the PostgreSQL variants are
skipped with the reason printed; with `MODELDECK_REQUIRE_PG=1` (CI) they fail instead.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# pytest caches the assertion-rewritten test modules as bytecode, unless bytecode is not written (as
# under PYTHONDONTWRITEBYTECODE, set on this project's machines): then every xdist worker rewrites and
# compiles all of them again, 2.6 s of its start. The cache goes to tests/__pycache__ (ignored by git).
sys.dont_write_bytecode = False
# four_processes; deck (a real registry and supervisor); iris_server (a real `modeldeck serve`)
pytest_plugins = ["helpers", "console_deck", "oip_servers"]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (the default, from pyproject's addopts): two workers per CPU.

    Most of a test's time is spent waiting on real processes (a supervisor's pass, a worker's start,
    a scrape) rather than computing, so a second worker per CPU overlaps those waits. An explicit
    `-n N`, `-n0` (serial), or PYTEST_XDIST_AUTO_NUM_WORKERS overrides it.
    """
    chosen = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "")
    if chosen.isdigit():
        return int(chosen)
    return 2 * len(os.sched_getaffinity(0))


RELIABILITY = ROOT / "tests" / "reliability"
#: pyproject's `addopts` mark expression: the default suite leaves the reliability tier out.
DEFAULT_MARKS = "not reliability"


def _asks_for_the_reliability_tier(args: list[str]) -> bool:
    """Whether a path on the command line is in tests/reliability (a file, a test in one, the folder)."""
    for arg in args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == RELIABILITY or RELIABILITY in path.parents:
            return True
    return False


def pytest_configure(config: pytest.Config) -> None:
    """Run the reliability tests a command line names; byte-compile the project once.

    The default suite leaves the reliability tier out (`-m 'not reliability'` in pyproject's
    `addopts`); a path into tests/reliability on the command line asks for it, so it runs there (any
    other `-m` given is kept).

    pip compiles an installed package; an editable checkout under `PYTHONDONTWRITEBYTECODE` (set on
    this project's machines) would otherwise have every process the tests start (supervisors,
    preloaders, workers, each CLI call) compile registry/ and console/ from source again: about a
    tenth of a second of CPU each, hundreds of times. Up-to-date files are skipped.
    """
    if config.option.markexpr == DEFAULT_MARKS and _asks_for_the_reliability_tier(config.args):
        config.option.markexpr = ""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller has compiled them
        return
    import compileall

    for package in ("registry", "console"):
        compileall.compile_dir(ROOT / package, quiet=1, workers=1)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the marks into group names
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test that uses a module-scoped fixture its module's `xdist_group`.

    With `--dist=loadgroup` an ungrouped test may run on any worker, and each worker that runs a test
    of a module builds that module's fixtures again: a second supervisor, a second set of servers.
    Grouped, a module's shared fixtures are built once and its tests run in file order on one worker
    (xdist hands out the largest groups first). An explicit `xdist_group` mark is kept as it is.
    """
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        info = getattr(item, "_fixtureinfo", None)  # pytest keeps a test's fixture definitions here
        if info is None:
            continue
        if any(defs[-1].scope == "module" for defs in info.name2fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Keep the garbage collector off what collection imported, and let it run less often.

    A worker holds scikit-learn, pandas, Textual and every test module: about 200,000 objects that
    live as long as it does, which each full collection scanned again (a fifth of a worker's CPU in
    the console tests). Frozen, they are never scanned; a larger first threshold makes the young
    collections (one per 700 allocations by default) rarer. Cyclic garbage is still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(5000, 20, 100)


@cache
def postgres_admin_url() -> str | None:
    """A URL of a PostgreSQL role that may create databases, or None if no server can be had."""
    url = os.environ.get("MODELDECK_TEST_PG_URL")
    if url:
        return url
    try:
        result = subprocess.run(
            ["bash", str(ROOT / ".ci" / "postgres.sh"), "--no-install"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (result.stdout.strip() or None) if result.returncode == 0 else None


def _no_postgres(reason: str) -> None:
    if os.environ.get("MODELDECK_REQUIRE_PG") == "1":
        pytest.fail(f"PostgreSQL required (MODELDECK_REQUIRE_PG=1) but {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}; run .ci/postgres.sh or set MODELDECK_TEST_PG_URL")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    url = postgres_admin_url()
    if url is None:
        _no_postgres("no PostgreSQL server could be started here")
    return url  # type: ignore[return-value]


@contextlib.contextmanager
def _database(server: str, template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database on `server` (a copy of `template`, else empty), dropped afterwards."""
    from sqlalchemy import create_engine, text

    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"md_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    except Exception as exc:
        admin.dispose()
        _no_postgres(f"cannot create a database on {server}: {exc}")
    base = server.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    try:
        for attempt in range(20):
            try:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except Exception:  # e.g. an autovacuum worker in it that this role may not end: it finishes
                if attempt == 19:
                    raise
                time.sleep(0.5)
    finally:
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with _database(postgres_server) as url:
        yield url


@pytest.fixture(scope="session")
def _postgres_at_head(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The name of a database migrated to the newest schema, once per worker, to copy (`TEMPLATE`)."""
    from registry import Registry

    with _database(postgres_server) as url:
        Registry(home=tmp_path_factory.mktemp("pg-at-head"), db_url=url).close()
        yield url.rsplit("/", 1)[1]


@pytest.fixture(scope="session")
def _sqlite_at_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite registry database migrated to the newest schema, once per worker, to copy."""
    from registry import Registry

    home = tmp_path_factory.mktemp("sqlite-at-head")
    Registry(home=home, db_url=f"sqlite:///{home / 'registry.db'}").close()
    assert not (home / "registry.db-wal").exists()  # closing checkpointed it: the file is all of it
    return home / "registry.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The database URL of a fresh registry, once on SQLite and once on PostgreSQL.

    Empty, except for a test that also opens the `registry` fixture: its database is a copy of one
    migrated to the newest schema once per worker (what `Registry()` would do first on an empty one;
    the migrations themselves are tested on empty databases, by the tests that do not open it).
    """
    at_head = "registry" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "home" / "registry.db"
        if at_head:
            path.parent.mkdir(exist_ok=True)
            shutil.copy2(request.getfixturevalue("_sqlite_at_head"), path)
        yield f"sqlite:///{path}"
    elif at_head:
        server, template = (
            request.getfixturevalue("postgres_server"),
            request.getfixturevalue("_postgres_at_head"),
        )
        with _database(server, template) as url:
            yield url
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private MODELDECK_HOME for the test (also set in the environment for the CLI)."""
    path = tmp_path / "home"
    path.mkdir(exist_ok=True)
    monkeypatch.setenv("MODELDECK_HOME", str(path))
    monkeypatch.delenv("MODELDECK_DB_URL", raising=False)
    monkeypatch.delenv("MODELDECK_ARTIFACTS_DIR", raising=False)
    return path


@pytest.fixture
def registry(home: Path, db_url: str, monkeypatch: pytest.MonkeyPatch):
    """An open Registry in a private home, on each database."""
    from registry import Registry

    monkeypatch.setenv("MODELDECK_DB_URL", db_url)
    reg = Registry(home=home, db_url=db_url)
    yield reg
    reg.close()


@pytest.fixture(scope="session")
def iris():
    """(X, y) of the iris data set as a DataFrame and a Series."""
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True, as_frame=True)


@pytest.fixture(scope="session")
def iris_model(iris):
    """A LogisticRegression fitted on iris, with named columns."""
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    return LogisticRegression(max_iter=1000).fit(X, y)


@pytest.fixture(scope="session")
def array_model():
    """A Ridge regressor fitted on a plain numpy array (no column names)."""
    import numpy as np
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    return Ridge().fit(X, X @ np.array([1.0, -2.0, 0.5])), X
