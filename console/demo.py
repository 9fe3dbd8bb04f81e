"""Demo models trained on data sets that ship with scikit-learn (nothing is downloaded)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from console.config import ConsoleConfig
from registry import Registry
from registry.store import default_home

SEED = 7


def default_demo_home() -> Path:
    return default_home() / "demo"


def open_demo_registry(home: Path) -> Registry:
    """The demo's registry: always the embedded SQLite file in the demo home."""
    return Registry(home=home, db_url=f"sqlite:///{home / 'registry.db'}")


#: What the live demo deploys, and the one whose inputs drift after a minute.
DEMO_DEPLOYMENTS = ("iris@champion", "diabetes@champion")
DRIFTING = "iris"
#: Once traffic flows, iris's challenger (staging) goes out as a canary with steps short enough to watch:
#: at the demo's 20 requests a second, each step gets the answers its checks need in about 30 s. The
#: challenger is a 50-tree forest, knowingly a few milliseconds slower than the regression it replaces
#: (its p99 reached 15 ms on a busy laptop): the demo allows it 50 ms more, not the default 10.
DEMO_CANARY = (
    "iris@staging",
    {
        "steps": [25, 50, 100],
        "step_seconds": 30,
        "min_requests": 60,
        "max_error_increase": 0.02,
        "latency_slack": 0.05,
    },
)


def run_live_demo(
    home: Path, keep: bool = False, drift_after: float = 60.0, config: ConsoleConfig | None = None
) -> None:
    """Deploy the demo models, send them traffic (drifting one after a while), try iris's challenger as
    a canary and open the console
    with `config` (theme, refresh, mouse). Quitting stops the traffic and, unless `keep`, the demo's
    servers and supervisor."""
    import contextlib
    import os
    import threading

    from console.app import ModeldeckApp
    from console.demo_traffic import DemoTraffic
    from registry.serving.client import SupervisorClient

    had_db_url = bool(os.environ.get("MODELDECK_DB_URL"))
    os.environ["MODELDECK_HOME"] = str(home)
    os.environ["MODELDECK_DB_URL"] = f"sqlite:///{home / 'registry.db'}"
    client = SupervisorClient(home)
    traffic: list[DemoTraffic] = []
    config = config or ConsoleConfig()
    app = ModeldeckApp(home, read_only=config.read_only, refresh_seconds=config.refresh, theme=config.theme)
    app.starting_supervisor = True  # no "supervisor not running" alarm while it is being started here

    quitting = threading.Event()

    def bring_up() -> None:
        try:
            deploy_all()
        finally:
            app.starting_supervisor = False

    def deploy_all() -> None:
        targets = {}
        for ref in DEMO_DEPLOYMENTS:
            if quitting.is_set():
                return
            try:
                result = client.deploy(ref, reason="modeldeck demo")
            except Exception as exc:  # shown in the console; the rest of the demo goes on
                with contextlib.suppress(RuntimeError):  # the console may not be up yet, or gone
                    app.call_from_thread(app.notify, f"demo: {ref} did not deploy: {exc}", severity="error")
                continue
            targets[result.name] = (result.url, f"{result.model}:{result.version}")
        if targets and not quitting.is_set():
            traffic.append(DemoTraffic(home, targets, drifting=DRIFTING, drift_after=drift_after))
            traffic[0].start()
        if "iris" in targets and not quitting.is_set():
            ref, analysis = DEMO_CANARY
            try:
                client.deploy(
                    ref, rollout="canary", analysis=analysis, reason="modeldeck demo: the challenger"
                )
            except Exception as exc:  # shown in the console; the demo goes on without it
                with contextlib.suppress(RuntimeError):
                    app.call_from_thread(app.notify, f"demo: no canary of {ref}: {exc}", severity="error")

    deploying = threading.Thread(target=bring_up, daemon=True, name="demo-deploy")
    deploying.start()
    try:
        app.run(mouse=config.mouse)
    finally:
        # A quit while the demo still deploys: let the deploy under way end (it may be starting the
        # supervisor), so that the shutdown below finds and stops everything it started.
        quitting.set()
        if deploying.is_alive():
            print("stopping the demo..." if not keep else "waiting for the demo's deploys...", flush=True)
            deploying.join(120)
        for sender in traffic:
            sender.stop()
        if not keep:
            client.shutdown(stop_servers=True)
        client.close()
    print(reopen_hint(home, keep, had_db_url))


def reopen_hint(home: Path, kept: bool, had_db_url: bool = False) -> str:
    """What the demo says on quit: where its registry is and the one command that opens it again
    (the demo's registry is not the user's: `modeldeck models` alone shows the user's own)."""
    import shlex
    import shutil

    command = _own_command(shutil.which("modeldeck"), sys.argv[0])
    # The demo's database is always its own SQLite file: a MODELDECK_DB_URL in the environment would
    # point the command elsewhere, so the command clears it.
    prefix = "MODELDECK_DB_URL= " if had_db_url else ""
    servers = "its servers keep running (--keep)" if kept else "its servers are stopped"
    return (
        f"demo registry: {home} ({servers})\n"
        f"open it again:  {prefix}{command} --home {shlex.quote(str(home))} console\n"
        "(every other command takes the same --home: models, versions iris, history iris, status)"
    )


def _own_command(on_path: str | None, argv0: str) -> str:
    """How to run this very modeldeck again: `modeldeck` when that is the one on PATH, else the
    script as it was started (`.venv/bin/modeldeck` from the README), else `python -m console.cli`."""
    import shlex

    started = Path(argv0)
    if started.name == "modeldeck":
        if on_path is not None and Path(on_path).resolve() == started.resolve():
            return "modeldeck"
        return shlex.quote(argv0)
    if on_path is not None:
        return "modeldeck"
    return f"{shlex.quote(sys.executable)} -m console.cli"


def build_demo(home: Path) -> dict[str, str]:
    """Register the demo models in `home` (once; a second run leaves them as they are)."""
    home.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    with open_demo_registry(home) as reg:
        existing = {m.name: m for m in reg.list_models()}
        for name, build in DEMO_MODELS.items():
            if name in existing:
                count = existing[name].versions
                made[name] = f"already there ({count} version{'s' if count != 1 else ''})"
                continue
            made[name] = build(reg)
    return made


def _split(X: Any, y: Any) -> tuple[Any, Any, Any, Any]:
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=0.25, random_state=SEED)


def _iris(reg: Registry) -> str:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = _split(X, y)
    candidates = [
        ("strongly regularised baseline", LogisticRegression(C=0.05, max_iter=1000)),
        ("tuned regularisation", LogisticRegression(C=1.0, max_iter=1000)),
        ("random forest challenger", RandomForestClassifier(n_estimators=50, random_state=SEED)),
    ]
    parent = None
    for description, model in candidates:
        model.fit(X_train, y_train)
        version = reg.register(
            model,
            "iris",
            reference=X_train,
            description=description,
            parent=parent,
            metrics={"accuracy": model.score(X_test, y_test)},
            tags={"dataset": "iris", "task": "species"},
        )
        parent = version.version
    reg.set_alias("iris", "champion", 2)
    reg.set_alias("iris", "staging", 3)
    reg.describe("iris", "Iris species classifier (demo)")
    return "3 versions, champion → 2, staging → 3"


def _diabetes(reg: Registry) -> str:
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_absolute_error

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = _split(X, y)
    for model in (Ridge(alpha=0.5), GradientBoostingRegressor(random_state=SEED)):
        model.fit(X_train, y_train)
        reg.register(
            model,
            "diabetes",
            reference=X_train,
            tags={"dataset": "diabetes"},
            metrics={
                "r2": model.score(X_test, y_test),
                "mae": mean_absolute_error(y_test, model.predict(X_test)),
            },
        )
    reg.set_alias("diabetes", "champion", 2)
    reg.describe("diabetes", "Disease progression one year after baseline (demo regressor)")
    return "2 versions, champion → 2"


def _tumor(reg: Registry) -> str:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    data = load_breast_cancer(as_frame=True)
    numeric = ["mean smoothness", "mean compactness", "mean concavity", "worst area", "worst concave points"]
    X = data.frame[numeric].copy()
    X["size band"] = pd.qcut(data.frame["mean radius"], 3, labels=["small", "medium", "large"]).astype(str)
    X["texture band"] = pd.qcut(data.frame["mean texture"], 2, labels=["smooth", "rough"]).astype(str)
    X_train, X_test, y_train, y_test = _split(X, data.target)
    model = Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        ("categories", OneHotEncoder(handle_unknown="ignore"), ["size band", "texture band"]),
                        ("numbers", StandardScaler(), numeric),
                    ]
                ),
            ),
            ("classify", LogisticRegression(max_iter=1000)),
        ]
    ).fit(X_train, y_train)
    reg.register(
        model,
        "tumor",
        reference=X_train,
        alias="champion",
        tags={"dataset": "breast_cancer"},
        description="Pipeline with categorical and numeric features",
        metrics={"accuracy": model.score(X_test, y_test)},
    )
    reg.describe("tumor", "Benign/malignant classifier: a pipeline with categorical features (demo)")
    return "1 version, champion → 1"


DEMO_MODELS: dict[str, Callable[[Registry], str]] = {"iris": _iris, "diabetes": _diabetes, "tumor": _tumor}
