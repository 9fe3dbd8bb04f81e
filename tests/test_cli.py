"""The `modeldeck` command as a user and a script see it: output, --json, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from console.cli import app

runner = CliRunner()


def run(*args: str, ok: bool = True):
    result = runner.invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, result.output + result.stderr
    return result


def run_json(*args: str):
    return json.loads(run(*args, "--json").stdout)


@pytest.fixture
def skops_file(tmp_path: Path, iris_model) -> Path:
    import skops.io as sio

    path = tmp_path / "iris.skops"
    sio.dump(iris_model, path)
    return path


@pytest.fixture
def reference_csv(tmp_path: Path, iris) -> Path:
    path = tmp_path / "reference.csv"
    iris[0].to_csv(path, index=False)
    return path


def test_register_show_and_list_as_json(home, skops_file, reference_csv):
    made = run_json(
        "register",
        str(skops_file),
        "--name",
        "iris",
        "--alias",
        "champion",
        "--reference",
        str(reference_csv),
        "--tag",
        "team=fraud",
        "--metric",
        "accuracy=0.97",
    )
    assert made["version"] == 1 and made["aliases"] == ["champion"]
    assert made["reference_rows"] == 150 and made["tags"] == {"team": "fraud"}
    shown = run_json("show", "iris@champion")
    assert shown["metrics"] == {"accuracy": 0.97}
    assert shown["signature"]["columns"][0]["name"] == "sepal length (cm)"
    assert run_json("models")[0]["aliases"] == {"champion": 1}
    assert [v["version"] for v in run_json("versions", "iris")] == [1]


def test_human_output_names_what_happened(home, skops_file):
    assert "registered iris:1" in run("register", str(skops_file), "--name", "iris").stdout
    run("register", str(skops_file), "--name", "iris")
    assert "iris@champion → 2" in run("alias", "iris", "2", "champion").stdout
    listing = run("versions", "iris").stdout
    assert "champion" in listing and "LogisticRegression" in listing
    rows = listing.splitlines()
    assert all(row == row.rstrip() for row in rows), "piped tables carry no trailing blanks"
    assert len(rows) == 3, "one line per version, never wrapped"
    assert "sklearn.linear_model" in run("show", "iris").stdout


def test_alias_tag_archive_delete_and_history(home, skops_file):
    for _ in range(3):
        run("register", str(skops_file), "--name", "iris")
    run("alias", "iris", "1", "champion")
    run("alias", "iris", "2", "champion", "--reason", "better recall on the March data")
    run("tag", "iris:2", "owner=ana", "stage=canary")
    run("tag", "iris:2", "--remove", "stage")
    assert run_json("show", "iris:2")["tags"] == {"owner": "ana"}
    run("archive", "iris:3")
    assert [v["version"] for v in run_json("versions", "iris")] == [1, 2]
    assert [v["version"] for v in run_json("versions", "iris", "--all")] == [1, 2, 3]
    refused = run("delete", "iris:2", "--yes", ok=False)
    assert refused.exit_code == 1 and "alias 'champion'" in refused.stderr
    run("delete", "iris:1", "--yes")
    state = run_json("history", "iris")["state"]
    assert state["versions"] == [2, 3] and state["aliases"] == {"champion": 2}
    events = run_json("history", "iris")["events"]
    assert events[4]["reason"] == "better recall on the March data"
    kinds = [e["kind"] for e in events]
    assert kinds.count("alias_set") == 2 and "deleted" in kinds and "archived" in kinds
    run("unalias", "iris", "champion")
    assert run_json("show", "iris:2")["aliases"] == []


def test_export_then_import_into_another_home(home, skops_file, tmp_path, monkeypatch):
    run("register", str(skops_file), "--name", "iris")
    archive = tmp_path / "iris-1.zip"
    run("export", "iris:1", str(archive))
    monkeypatch.setenv("MODELDECK_HOME", str(tmp_path / "laptop"))
    imported = run_json("import", str(archive), "--name", "iris-from-server")
    assert imported["version"] == 1
    assert imported["origin"]["imported_from"]["model"] == "iris"


def test_db_upgrade_reports_the_schema_revision(home):
    from registry.store import SCHEMA_HEAD

    assert run_json("db", "upgrade") == {"revision": SCHEMA_HEAD}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "no model 'nope'"),
        (["show", "iris:x"], "must be a number"),
        (["show", "iris:9"], "has no version 9"),
        (["show", "iris@prod"], "has no alias 'prod'"),
        (["alias", "iris", "1", "latest"], "'latest' is reserved"),
        (["register", "/no/such/model.skops", "--name", "x"], "no such file"),
        (["history", "iris", "--at", "teatime"], "cannot read time"),
        (["delete", "iris", "--yes"], "delete takes NAME:VERSION"),
        (["tag", "iris:1", "novalue"], "write KEY=VALUE"),
    ],
)
def test_user_mistakes_are_one_line_errors(home, skops_file, args, message):
    run("register", str(skops_file), "--name", "iris")
    result = run(*args, ok=False)
    assert result.exit_code != 0
    assert message in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_pickle_needs_trust_pickle(home, tmp_path, iris_model):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(iris_model))
    refused = run("register", str(path), "--name", "iris", ok=False)
    assert refused.exit_code == 1 and "--trust-pickle" in refused.stderr
    assert run_json("models") == []
    made = run_json("register", str(path), "--name", "iris", "--trust-pickle")
    assert made["version"] == 1


def test_reference_that_does_not_fit_the_model_is_refused(home, skops_file, tmp_path, iris):
    bad = tmp_path / "bad.csv"
    iris[0].drop(columns=["petal width (cm)"]).to_csv(bad, index=False)
    result = run("register", str(skops_file), "--name", "iris", "--reference", str(bad), ok=False)
    assert "missing ['petal width (cm)']" in result.stderr
    assert run_json("models") == []


def test_demo_builds_three_models_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELDECK_HOME", str(tmp_path))
    first = run_json("demo")
    assert first["home"] == str(tmp_path / "demo")
    assert set(first["models"]) == {"iris", "diabetes", "tumor"}
    again = run_json("demo")
    assert all("already there" in text for text in again["models"].values())
    monkeypatch.setenv("MODELDECK_HOME", str(tmp_path / "demo"))
    models = {m["name"]: m for m in run_json("models")}
    assert models["iris"]["versions"] == 3 and models["iris"]["aliases"] == {"champion": 2, "staging": 3}
    kinds = {c["kind"] for c in run_json("show", "tumor@champion")["signature"]["columns"]}
    assert kinds == {"numeric", "categorical"}


def _last_line_of(code: str, home: Path) -> Any:
    """The JSON on the last line `code` prints, run in a fresh Python process on `home`."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"MODELDECK_HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _modules_after(code: str, home: Path) -> list[str]:
    probe = (
        f"{code}\nimport sys, json\n"
        "print(json.dumps(sorted(m for m in ('textual', 'sklearn', 'pandas') if m in sys.modules)))"
    )
    return _last_line_of(probe, home)


def test_import_registry_pulls_in_no_sklearn_pandas_or_textual(home):
    assert _modules_after("import registry; registry.Registry()", home) == []


def test_registry_verbs_do_not_import_textual(home, skops_file):
    """Each verb through Typer, one after the other in one process (a process each cost 3 CPU-s):
    what is loaded after each one, so a verb that pulls a module in is named."""
    run("register", str(skops_file), "--name", "iris")
    verbs = [["models"], ["versions", "iris"], ["show", "iris"], ["history", "iris"]]
    code = (
        "import json, sys\n"
        "from console.cli import app\n"
        "loaded = {}\n"
        f"for verb in {verbs!r}:\n"
        "    try:\n"
        "        app([*verb, '--json'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    loaded[' '.join(verb)] = sorted(m for m in ('textual', 'sklearn') if m in sys.modules)\n"
        "print(json.dumps(loaded))"
    )
    loaded = _last_line_of(code, home)
    assert loaded == {" ".join(verb): [] for verb in verbs}, (
        "these verbs should need neither Textual nor scikit-learn"
    )


def test_the_verbs_that_ask_the_supervisor_load_no_orm_and_no_numpy(registry) -> None:
    """`status`, `deploy`, `stop`, `scale`, `rollback` and `logs` only talk to the supervisor: their
    command line, the read-only check before a change and the drift reason `status` prints load
    neither SQLAlchemy, SQLModel nor numpy (0.3 s of a 0.4 s `status`, before)."""
    code = (
        "import sys, json\n"
        "import console.cli\n"
        "from console.status_view import drift_reason\n"
        "from registry.settings import Settings\n"
        "from registry.write_access import read_only_reason\n"
        "assert read_only_reason(Settings.from_env()) is None\n"
        "report = {'status': 'warn', 'features': [\n"
        "    {'name': 'a', 'status': 'ok', 'reason': 'fine', 'p_adjusted': 0.5},\n"
        "    {'name': 'b', 'status': 'warn', 'reason': 'KS p=0.001', 'p_adjusted': 0.004}]}\n"
        "print(drift_reason(report))\n"
        "print(json.dumps(sorted(m for m in ('sqlalchemy', 'sqlmodel', 'numpy') if m in sys.modules)))"
    )
    env = {"MODELDECK_HOME": str(registry.settings.home), "MODELDECK_DB_URL": registry.settings.db_url}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    reason, loaded = result.stdout.strip().splitlines()[-2:]
    assert reason == "b: KS p=0.001"
    assert json.loads(loaded) == []


def test_python_dash_m_console_calls_itself_modeldeck_as_the_installed_command_does(home) -> None:
    done = subprocess.run([sys.executable, "-m", "console", "nosuch"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "Usage: modeldeck [OPTIONS] COMMAND" in done.stderr and "Try 'modeldeck --help'" in done.stderr


def test_status_says_why_it_will_not_ask_a_socket_that_is_not_a_supervisors(home) -> None:
    """A file where the control socket should be is refused, and `status` says so (not "no
    supervisor is running"), on the installed command's path and through Typer alike."""
    run_dir = home / "run"
    run_dir.mkdir(mode=0o700)
    (run_dir / "supervisor.sock").write_text("")
    env = {**os.environ, "MODELDECK_HOME": str(home)}
    answers = [
        subprocess.run([sys.executable, "-m", module, "status"], capture_output=True, text=True, env=env)
        for module in ("console", "console.cli")
    ]
    for done in answers:
        assert done.returncode == 0, done.stderr
        said = " ".join(done.stderr.split())
        assert "supervisor.sock: not a socket of yours" in said and "no supervisor is running" not in said
    assert answers[0].stdout == answers[1].stdout and answers[0].stderr == answers[1].stderr


def test_user_text_is_printed_verbatim_never_as_markup(home, tmp_path, skops_file):
    odd = tmp_path / "model[v2].skops"
    odd.write_bytes(skops_file.read_bytes())
    run("register", str(odd), "--name", "odd", "--description", "[bold red]boom[/]", "--tag", "k=[/]")
    run("register", str(odd), "--name", "odd")
    run("alias", "odd", "2", "champion", "--reason", "per [/] review")
    shown = run("show", "odd:1").stdout
    assert "model[v2].skops" in shown and "[bold red]boom[/]" in shown and "k=[/]" in shown
    assert "per [/] review" in run("history", "odd").stdout
    result = run("show", "odd@[/]", ok=False)
    assert result.exit_code == 1 and "[/]" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODELDECK_DB_URL": "garbage"}, "is not a database URL"),
        ({"MODELDECK_DB_URL": "mysql://x/y"}, "SQLite and PostgreSQL only"),
        ({"MODELDECK_DB_TIMEOUT": "abc"}, "MODELDECK_DB_TIMEOUT='abc' is not a number"),
    ],
)
def test_bad_settings_are_one_line_errors(home, monkeypatch, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = run("models", ok=False)
    assert result.exit_code == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_file_that_is_not_a_database_or_a_home_that_is_a_file(home, tmp_path, monkeypatch):
    (home / "registry.db").write_text("not a database at all, just text " * 100)
    result = run("models", ok=False)
    assert result.exit_code == 1 and "not a database" in result.stderr
    monkeypatch.setenv("MODELDECK_HOME", str(home / "registry.db"))
    result = run("models", ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_global_home_option_points_every_command_at_a_home(tmp_path, monkeypatch, skops_file):
    monkeypatch.delenv("MODELDECK_DB_URL", raising=False)
    monkeypatch.setenv("MODELDECK_HOME", str(tmp_path / "elsewhere"))
    run("--home", str(tmp_path / "team"), "register", str(skops_file), "--name", "iris")
    assert (tmp_path / "team" / "registry.db").exists()


def test_export_into_a_directory_names_the_file(home, skops_file, tmp_path):
    run("register", str(skops_file), "--name", "iris")
    target = tmp_path / "exports"
    target.mkdir()
    written = run_json("export", "iris:1", str(target))["file"]
    assert written == str(target / "iris-1.mdx")
    assert sorted(p.name for p in target.iterdir()) == ["iris-1.mdx"]


def test_delete_without_a_terminal_needs_yes(home, skops_file):
    run("register", str(skops_file), "--name", "iris")
    result = run("delete", "iris:1", ok=False)
    assert result.exit_code == 1 and "--yes" in result.stderr
    assert [v["version"] for v in run_json("versions", "iris")] == [1]


def test_archive_needs_a_version_and_repeating_it_records_nothing(home, skops_file):
    run("register", str(skops_file), "--name", "iris")
    assert "say which version" in run("archive", "iris", ok=False).stderr
    run("archive", "iris:1")
    run("archive", "iris:1")
    kinds = [e["kind"] for e in run_json("history", "iris")["events"]]
    assert kinds.count("archived") == 1


def test_reference_with_text_in_a_numeric_column_names_the_column(home, skops_file, tmp_path, iris):
    bad = tmp_path / "bad.csv"
    iris[0].assign(**{"sepal length (cm)": "abc"}).to_csv(bad, index=False)
    result = run("register", str(skops_file), "--name", "iris", "--reference", str(bad), ok=False)
    assert "cannot predict on its reference sample" in result.stderr
    assert "sepal length (cm)" in result.stderr


def test_console_options_are_checked_before_anything_starts() -> None:
    theme = run("console", "--theme", "nope", ok=False)
    assert theme.exit_code == 1 and "unknown theme 'nope'" in theme.output
    refresh = run("console", "--refresh", "0", ok=False)
    assert refresh.exit_code == 1 and "--refresh must be a positive number" in refresh.output


def test_a_missing_supervisor_is_reported_without_connecting_or_importing_httpx(home):
    # The console asks every second while the supervisor is down: no socket must mean a quick answer.
    code = (
        "import sys\n"
        "from registry.errors import SupervisorError\n"
        "from registry.serving.client import SupervisorClient\n"
        "try:\n    SupervisorClient().status()\nexcept SupervisorError as exc:\n    print(exc)\n"
        "print('httpx' in sys.modules)"
    )
    env = {"MODELDECK_HOME": str(home), "PATH": "/usr/bin:/bin"}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    first, *_, last = result.stdout.splitlines()
    assert first.startswith("no supervisor is running for") and last == "False"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["deploy", "iris", "--port", "0"],
            "--port must be between 1 and 65535 (leave it out for a free port), not 0",
        ),
        (
            ["deploy", "iris", "--port", "99999"],
            "--port must be between 1 and 65535 (leave it out for a free port), not 99999",
        ),
        (
            ["deploy", "iris", "--host", "somewhere"],
            "--host must be an IP address or localhost, not 'somewhere'",
        ),
        (["deploy", "iris", "--workers", "0"], "workers must be between 1 and 64, not 0"),
        (["deploy", "iris", "--workers", "65"], "workers must be between 1 and 64, not 65"),
        (
            ["deploy", "iris", "--max-body-mb", "-1"],
            "--max-body-mb must be above 0 and at most 1024, not -1.0",
        ),
        (
            ["deploy", "iris", "--max-body-mb", "nan"],
            "--max-body-mb must be above 0 and at most 1024, not nan",
        ),
        (["deploy", "iris", "--batching", "maybe"], "--batching must be auto, on or off, not 'maybe'"),
        (
            ["deploy", "iris", "--idle-timeout", "0"],
            "--idle-timeout must be above 0 and at most 86400 seconds, not 0.0",
        ),
        (
            ["deploy", "iris", "--header-timeout", "-5"],
            "--header-timeout must be above 0 and at most 86400 seconds, not -5.0",
        ),
        (
            ["deploy", "iris", "--max-connections", "0"],
            "--max-connections must be between 1 and 1000000, not 0",
        ),
        (
            ["deploy", "iris", "--name", "../x"],
            "deployment name '../x' is not allowed: use up to 128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        ),
        (["deploy", "iris", "--name", "a/b"], "deployment name 'a/b' is not allowed"),
        (
            ["serve", "iris", "--port", "99999"],
            "--port must be between 1 and 65535 (leave it out for a free port), not 99999",
        ),
        (
            ["serve", "iris", "--port", "0"],
            "--port must be between 1 and 65535 (leave it out for a free port), not 0",
        ),
        (["serve", "iris", "--max-body-mb", "0"], "--max-body-mb must be above 0 and at most 1024, not 0.0"),
        (["serve", "iris", "--host", "1.2.3"], "--host must be an IP address or localhost, not '1.2.3'"),
        (
            ["serve", "iris", "--body-timeout", "inf"],
            "--body-timeout must be above 0 and at most 86400 seconds, not inf",
        ),
        (["scale", "iris", "0"], "workers must be between 1 and 64, not 0"),
        (["logs", "../../etc/passwd"], "deployment name '../../etc/passwd' is not allowed"),
        (
            ["supervisor", "start", "--drain-grace", "-1"],
            "--drain-grace must be at least 0 and at most 86400 seconds, not -1.0",
        ),
        (
            ["supervisor", "start", "--metrics", "nowhere"],
            "--metrics must be HOST:PORT or off, not 'nowhere'",
        ),
        (["supervisor", "start", "--drift-rows", "5"], "--drift-rows must be at least 100 rows, not 5"),
        (["supervisor", "start", "--keep-1m-days", "0"], "--keep-1m-days must be at least 1 days, not 0.0"),
        (
            ["supervisor", "start", "--hang-timeout", "-1"],
            "--hang-timeout must be at least 0 seconds, not -1.0",
        ),
    ],
)
def test_bad_serving_options_are_one_line_errors(home, args: list[str], message: str) -> None:
    result = run(*args, ok=False)
    assert result.exit_code == 1, result.output + result.stderr
    said = " ".join(result.stderr.split())
    assert said.startswith(f"error: {message}"), said
    assert "Traceback" not in result.output + result.stderr and said.count("error:") == 1


# ---------------------------------------------------------------- issue 11: what an on-call engineer met


class _ReadyServer:
    """A stand-in model server on loopback that answers GET /health/ready with 200."""

    def __enter__(self) -> int:
        import http.server
        import threading

        class Ready(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200 if self.path == "/health/ready" else 404)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.server.server_address[1]

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _wanted(home: Path, skops_file: Path, ports: dict[str, int]) -> None:
    """Deployments in the registry (as the supervisor records them), with no supervisor running."""
    from registry import Registry
    from registry.deployments import save_deployment
    from registry.info import DeploymentInfo

    with Registry(home=home) as reg:
        reg.register_file(skops_file, "iris")
        for name, port in ports.items():
            spec = DeploymentInfo(
                name=name,
                model="iris",
                version=1,
                standby_version=None,
                host="127.0.0.1",
                port=port,
                workers=2,
                options={},
            )
            save_deployment(reg, spec, "switched")


def test_without_a_supervisor_status_and_the_console_ask_each_port(home, skops_file) -> None:
    from helpers import free_port

    from console.backend import Backend
    from console.widgets.live import state_text

    with _ReadyServer() as port:
        _wanted(home, skops_file, {"answers": port, "silent": free_port()})
        shown = run_json("status")
        assert shown["supervisor"] is None
        states = {d["name"]: (d["status"], d["message"]) for d in shown["deployments"]}
        assert states == {"answers": ("serving", "supervisor down"), "silent": ("down", "supervisor down")}
        human = run("status").stdout.splitlines()
        answers = next(line for line in human if line.startswith("answers "))
        silent = next(line for line in human if line.startswith("silent "))
        assert "?/2" in answers and "serving (supervisor down)" in answers
        assert "down (supervisor down)" in silent
        backend = Backend(home)
        try:
            overview = backend.overview()
        finally:
            backend.close()
    live = overview.live
    assert state_text(live.get("answers", {}), overview.supervisor_up) == "serving (sup. down)"
    assert state_text(live.get("silent", {}), overview.supervisor_up) == "down"


def test_postgres_urls_mean_psycopg() -> None:
    from registry.store import Settings

    for scheme in ("postgres", "postgresql", "POSTGRES"):
        settings = Settings.from_env(db_url=f"{scheme}://md:secret@db.example:5432/registry")
        assert settings.db_url == "postgresql+psycopg://md:secret@db.example:5432/registry"
    assert Settings.from_env(db_url="postgresql+psycopg://h/db").db_url == "postgresql+psycopg://h/db"
    assert Settings.from_env(db_url="sqlite:///x.db").db_url == "sqlite:///x.db"


def test_a_postgres_url_opens_the_registry(home, postgres_url) -> None:
    from registry import Registry

    plain = "postgres://" + postgres_url.split("://", 1)[1]
    with Registry(home=home, db_url=plain) as reg:
        assert reg.list_models() == []
    os.environ["MODELDECK_DB_URL"] = plain
    try:
        assert run_json("models") == []
    finally:
        del os.environ["MODELDECK_DB_URL"]


def test_a_pickle_refusal_names_the_python_argument_or_the_flag(home, tmp_path, iris_model) -> None:
    from registry import PickleRefused, Registry

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(iris_model))
    with Registry(home=home) as reg, pytest.raises(PickleRefused) as refused:
        reg.register_file(path, "iris")
    assert "pass trust_pickle=True" in str(refused.value) and "--trust-pickle" not in str(refused.value)
    result = run("register", str(path), "--name", "iris", ok=False)
    assert result.exit_code == 1
    assert "pass --trust-pickle" in result.stderr and "trust_pickle=True" not in result.stderr


def test_register_file_takes_a_reference_path_like_the_cli(home, skops_file, reference_csv) -> None:
    from registry import Registry
    from registry.errors import ReferenceMismatch

    with Registry(home=home) as reg:
        assert reg.register_file(skops_file, "iris", reference=str(reference_csv)).reference_rows == 150
        assert reg.register_file(skops_file, "iris", reference=reference_csv).reference_rows == 150
        with pytest.raises(ReferenceMismatch, match="no such reference file"):
            reg.register_file(skops_file, "iris", reference="missing.csv")


def test_logs_of_an_unknown_deployment_lists_the_known_ones(home, skops_file) -> None:
    from helpers import free_port

    _wanted(home, skops_file, {"fraud": free_port(), "churn": free_port()})
    result = run("logs", "frud", ok=False)
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: no deployment 'frud'; known: churn, fraud"
    assert "no log yet for deployment 'fraud'" in run("logs", "fraud", ok=False).stderr


def test_logs_follow_starts_with_the_last_ten_lines(home) -> None:
    import queue
    import threading

    log = home / "logs" / "iris.log"
    log.parent.mkdir()
    log.write_text("".join(f"line {n}\n" for n in range(1, 101)))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    follow = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "logs", "iris", "-f"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x.rstrip("\n")) for x in follow.stdout], daemon=True).start()
    seen: list[str] = []

    def read_until(count: int) -> None:
        while len(seen) < count:
            seen.append(lines.get(timeout=30))

    try:
        read_until(10)
        assert seen == [f"line {n}" for n in range(91, 101)]
        with log.open("a") as handle:
            handle.write("line 101\n")
        read_until(11)
        assert seen[10:] == ["line 101"]
    finally:
        follow.terminate()
        follow.wait(10)


def test_json_goes_before_or_after_the_command(home) -> None:
    assert json.loads(run("--json", "models").stdout) == json.loads(run("models", "--json").stdout) == []
    assert json.loads(run("--json", "supervisor", "status").stdout) is None
    assert json.loads(run("--json", "status").stdout)["deployments"] == []
    assert not run("models").stdout.startswith("[")  # without it, people's output as before


def test_the_console_refuses_a_stdout_that_is_not_a_terminal(home, tmp_path) -> None:
    env = {**os.environ, "MODELDECK_CONFIG": str(tmp_path / "none.toml")}
    result = subprocess.run(
        [sys.executable, "-m", "console.cli", "console"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: the console needs a terminal, and stdout is not one; scripts can use the other commands "
        "(modeldeck status, models, ...) with --json"
    ]


def test_after_the_demo_the_printed_command_opens_the_demo_registry(tmp_path) -> None:
    from console.demo import build_demo, reopen_hint

    demo = tmp_path / "my demo"
    build_demo(demo)
    hint = reopen_hint(demo, kept=False, had_db_url=True)
    assert f"demo registry: {demo} (its servers are stopped)" in hint
    command = next(line for line in hint.splitlines() if line.startswith("open it again:"))
    command = command.removeprefix("open it again:").strip()
    assert command.endswith(" console")
    env = {**os.environ, "MODELDECK_DB_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    env.pop("MODELDECK_HOME", None)
    listed = subprocess.run(
        command.removesuffix(" console") + " models --json",
        shell=True,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert sorted(m["name"] for m in json.loads(listed.stdout)) == ["diabetes", "iris", "tumor"]


def test_supervisor_start_passes_the_daemons_settings_on(home, monkeypatch) -> None:
    from registry.errors import SupervisorError
    from registry.serving.client import SupervisorClient

    asked: list[tuple[str, ...]] = []

    def ensure_running(self, *flags: str) -> bool:
        asked.append(flags)
        raise SupervisorError("stop here", 500)

    monkeypatch.setattr(SupervisorClient, "ensure_running", ensure_running)
    run(
        "supervisor", "start", "--hang-timeout", "3", "--drift-rows", "500", "--keep-10s-hours", "2", ok=False
    )
    assert {"--hang-timeout=3.0", "--drift-rows=500", "--keep-10s-hours=2.0"} <= set(asked[0])


def test_the_demo_names_the_modeldeck_it_was_started_as(tmp_path) -> None:
    from console.demo import _own_command

    script = tmp_path / ".venv" / "bin" / "modeldeck"
    script.parent.mkdir(parents=True)
    script.touch()
    assert _own_command(None, str(script)) == str(script)  # the README's .venv/bin/modeldeck demo
    assert _own_command(str(script), str(script)) == "modeldeck"  # the one on PATH
    assert _own_command("/usr/local/bin/modeldeck", str(script)) == str(script)  # another one is on PATH
    assert _own_command(None, "-c").endswith(" -m console.cli")


def test_version_is_the_installed_distributions():
    import tomllib
    from importlib.metadata import version

    declared = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["version"]
    assert version("modeldeck") == declared
    assert run("--version").stdout == f"modeldeck {declared}\n"
    # eager: it answers before any command runs, and exits 0 where a bare `modeldeck` prints help
    assert run("--version", "status").stdout == f"modeldeck {declared}\n"
