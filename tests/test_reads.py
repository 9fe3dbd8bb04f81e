"""The light read path (registry/reader.py, console/quick.py): the read verbs print the same bytes as
the Typer command line on SQLite and PostgreSQL, leave to it what only a Registry can do (an older
schema, a missing database), and import nothing they have no use for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The installed `modeldeck` command's path (console.quick.main) and the Typer command line alone.
QUICK = [sys.executable, "-m", "console"]
TYPER = [sys.executable, "-c", "import sys; sys.argv[0] = 'modeldeck'; from console.cli import app; app()"]
VERBS = [
    ["models"],
    ["models", "--all"],
    ["--json", "models"],
    ["versions", "iris"],
    ["versions", "iris", "--all", "--json"],
    ["show", "iris@champion"],
    ["show", "iris:1", "--json"],
    ["show", "iris"],
    ["history", "iris"],
    ["history", "iris", "--at", "2000-01-01"],
    ["history", "iris", "--at=2000-01-01", "--json"],
    ["show", "nope"],
    ["show", "iris:9"],
    ["show", "iris@prod"],
    ["versions", "nope"],
    ["history", "iris", "--at", "teatime"],
    ["status"],
    ["status", "--json"],
]


def _env(home: Path, db_url: str | None) -> dict[str, str]:
    env = {**os.environ, "MODELDECK_HOME": str(home), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    env.pop("MODELDECK_DB_URL", None)
    if db_url is not None:
        env["MODELDECK_DB_URL"] = db_url
    return env


def _run(command: list[str], args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    done = subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


#: The Typer command line run on each command line in turn in one process (starting Typer and the
#: Registry once, not once per command), each one's exit status, stdout and stderr captured as a pipe
#: would (not a terminal). A fresh process for each is kept for the light path: that is the product.
TYPER_EACH = """
import contextlib, io, json, sys
sys.argv[0] = "modeldeck"
from console.cli import app

answers = []
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            app(args, prog_name="modeldeck")
        except SystemExit as exc:
            code = exc.code or 0
    answers.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(answers))
"""


def _typer_each(commands: list[list[str]], env: dict[str, str]) -> list[tuple[int, str, str]]:
    done = subprocess.run(
        [sys.executable, "-c", TYPER_EACH, json.dumps(commands)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return [tuple(answer) for answer in json.loads(done.stdout)]


def _fill(registry, iris_model) -> None:
    from registry.deployments import save_deployment
    from registry.info import DeploymentInfo

    registry.register(iris_model, "iris", tags={"task": "species"}, metrics={"accuracy": 0.9})
    registry.register(iris_model, "iris", alias="champion", description="second")
    registry.register(iris_model, "iris", parent=2)
    registry.archive("iris:3", reason="worse")
    registry.tag("iris", {"team": "ml"})
    registry.register(iris_model, "other")
    save_deployment(registry, DeploymentInfo("iris-prod", "iris", 2, 1, "127.0.0.1", 1, 1), "switched")


def test_read_verbs_print_what_the_typer_command_prints(registry, iris_model, home):
    """Byte for byte, exit status included, on each database (`history` without --at shows 'now',
    which differs between two runs: that one compares all but its `at`)."""
    _fill(registry, iris_model)
    env = _env(home, registry.settings.db_url)
    *theirs_each, typer = _typer_each([*VERBS, ["history", "iris", "--json"]], env)
    for args, theirs in zip(VERBS, theirs_each, strict=True):
        assert _run(QUICK, args, env) == theirs, args
    assert _run(TYPER, ["status"], env) == theirs_each[VERBS.index(["status"])]  # in a process of its own too
    quick = _run(QUICK, ["history", "iris", "--json"], env)
    assert quick[0] == typer[0] == 0
    mine, theirs = json.loads(quick[1]), json.loads(typer[1])
    assert mine["state"].pop("at") and theirs["state"].pop("at")
    assert mine == theirs and len(mine["events"]) == 7


def test_the_reader_gives_what_the_registry_gives(registry, iris_model):
    """The light reader (sqlite3 / psycopg) and the Registry (SQLAlchemy) run the same queries; the
    values they make of the drivers' rows must agree too (times, JSON, booleans)."""
    from datetime import UTC, datetime

    from registry.deployments import list_deployments
    from registry.reader import open_reader

    _fill(registry, iris_model)
    reader = open_reader(registry.settings)
    assert reader is not None
    try:
        assert reader.list_models(include_archived=True) == registry.list_models(include_archived=True)
        assert reader.versions("iris", include_archived=True) == registry.versions("iris", True)
        for ref in ("iris", "iris:1", "iris@champion", "other"):
            assert reader.get(ref) == registry.get(ref)
        now = datetime.now(UTC)
        assert reader.history("iris", now) == registry.history("iris", now)
        assert reader.recent_events(5) == registry.recent_events(5)
        assert reader.deployments() == list_deployments(registry)
        assert reader.get("iris:1").created_at.tzinfo is not None
    finally:
        reader.close()


def test_an_older_schema_is_upgraded_by_a_read_verb_as_before(home, tmp_path):
    """A database left at an older revision is not read by the light path: the Typer path opens a
    Registry, which upgrades it, then lists (here: nothing yet)."""
    from registry.store import SCHEMA_HEAD, Database, Settings, current_revision, upgrade_schema

    settings = Settings.from_env(home)
    old = Database(settings, upgrade=False)
    assert upgrade_schema(old, "0005") == "0005"
    old.dispose()
    code, out, err = _run(QUICK, ["models"], _env(home, None))
    assert (code, err) == (0, "")
    assert out.startswith("no models yet")
    db = Database(settings, upgrade=False)
    assert current_revision(db) == SCHEMA_HEAD
    db.dispose()


def test_a_missing_database_is_created_by_a_read_verb_as_before(tmp_path):
    home = tmp_path / "new-home"
    code, out, _ = _run(QUICK, ["--home", str(home), "models", "--json"], _env(tmp_path / "elsewhere", None))
    assert (code, json.loads(out)) == (0, [])
    assert (home / "registry.db").is_file()
    code, _, err = _run(QUICK, ["versions", "iris"], _env(home, None))
    assert code == 1 and "no model 'iris'; the registry is empty" in err


def test_a_read_only_registry_is_left_to_the_registry(home, iris_model):
    """The reader opens only a database this process may write; a read-only one is the Registry's
    (which opens it read-only, and notes how)."""
    from registry import Registry
    from registry.reader import open_reader
    from registry.settings import Settings

    with Registry(home) as reg:
        reg.register(iris_model, "iris")
    home.chmod(0o500)
    try:
        if os.access(home, os.W_OK):
            pytest.skip("running as a user that may write anything (root)")
        assert open_reader(Settings.from_env(home)) is None
        code, out, _ = _run(QUICK, ["models"], _env(home, None))
        assert code == 0 and out.splitlines()[1].startswith("iris")
    finally:
        home.chmod(0o700)


@pytest.mark.parametrize(
    "args", [["models"], ["versions", "iris"], ["show", "iris"], ["history", "iris"], ["status"]]
)
def test_read_verbs_import_no_orm_cli_framework_or_science(home, iris_model, args):
    """Nor Rich: what they print to a pipe is plain text (`console.plain`)."""
    from registry import Registry

    with Registry(home) as reg:
        reg.register(iris_model, "iris")
    code = (
        "import runpy, sys, atexit\n"
        "heavy = ('sqlmodel', 'sqlalchemy', 'pydantic', 'typer', 'sklearn', 'pandas', 'numpy', 'textual',"
        " 'rich', 'http.client', 'httpx')\n"
        "atexit.register(lambda: print('LOADED', [m for m in heavy if m in sys.modules], file=sys.stderr))\n"
        "sys.argv = ['modeldeck', *sys.argv[1:]]\n"
        "runpy.run_module('console', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=_env(home, None), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stderr


def test_the_console_backend_reads_without_sqlalchemy_and_falls_back_after_a_driver_error(home, iris_model):
    code = (
        "import sys\n"
        "from console.backend import Backend\n"
        "backend = Backend()\n"
        "overview = backend.overview()\n"
        "print([m.name for m in overview.models], 'sqlalchemy' in sys.modules)\n"
        "backend._reader._connection.close()  # the connection breaks: the Registry takes over\n"
        "print([m.name for m in backend.overview().models], 'sqlalchemy' in sys.modules)\n"
        "backend.close()\n"
    )
    from registry import Registry

    with Registry(home) as reg:
        reg.register(iris_model, "iris")
    done = subprocess.run(
        [sys.executable, "-c", code], env=_env(home, None), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['iris'] False", "['iris'] True"]


def test_options_the_quick_parser_does_not_know_go_to_typer():
    from console.quick import parse

    assert parse(["models"]) == ("models", [], {})
    assert parse(["--home", "h", "--json", "show", "a@b"]) == (
        "show",
        ["a@b"],
        {"--home": "h", "--json": True},
    )
    assert parse(["history", "x", "--at=1h ago"]) == ("history", ["x"], {"--at": "1h ago"})
    for args in (
        ["models", "--help"],
        ["versions"],
        ["versions", "a", "b"],
        ["show", "--", "x"],
        ["models", "-h"],
        ["deploy", "iris"],
        ["--home"],
        ["status", "x"],
        ["history", "x", "--at"],
    ):
        assert parse(args) is None, args
