"""The `modeldeck` command as a user and a script see it: output, --json, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

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


def _modules_after(code: str, home: Path) -> list[str]:
    probe = (
        f"{code}\nimport sys, json\n"
        "print(json.dumps(sorted(m for m in ('textual', 'sklearn', 'pandas') if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={"MODELDECK_HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_registry_pulls_in_no_sklearn_pandas_or_textual(home):
    assert _modules_after("import registry; registry.Registry()", home) == []


def test_registry_verbs_do_not_import_textual(home, skops_file):
    run("register", str(skops_file), "--name", "iris")
    for verb in ("models", "versions iris", "show iris", "history iris"):
        code = (
            "from console.cli import app\n"
            f"try:\n    app({verb.split()!r} + ['--json'])\nexcept SystemExit:\n    pass"
        )
        loaded = _modules_after(code, home)
        assert "textual" not in loaded, verb
        assert "sklearn" not in loaded, f"{verb} should not need scikit-learn"


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
    ],
)
def test_bad_serving_options_are_one_line_errors(home, args: list[str], message: str) -> None:
    result = run(*args, ok=False)
    assert result.exit_code == 1, result.output + result.stderr
    said = " ".join(result.stderr.split())
    assert said.startswith(f"error: {message}"), said
    assert "Traceback" not in result.output + result.stderr and said.count("error:") == 1
