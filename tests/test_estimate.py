"""Estimated performance before labels arrive (CBPE): calibration on the labelled reference, the
estimate's accuracy under covariate shift on real data, storage, and what status and Prometheus show."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from helpers import free_port, stop_supervisor, wait_until
from typer.testing import CliRunner

from console.cli import app
from registry import Registry
from registry.errors import ReferenceMismatch
from registry.monitoring.estimate import Calibration, estimate


def _split(loader, seed: int = 0) -> SimpleNamespace:  # type: ignore[no-untyped-def]
    """A quarter of the rows to train on, a quarter as the labelled reference, half as live traffic."""
    X, y = loader(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(X))
    quarter = len(X) // 4
    return SimpleNamespace(
        X=X, y=y, train=order[:quarter], reference=order[quarter : 2 * quarter], live=order[2 * quarter :]
    )


def _model(X, y):  # type: ignore[no-untyped-def]
    """A strongly regularised logistic regression: its raw probabilities are far too cautious."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000)).fit(X, y)


def _shifted_windows(data: SimpleNamespace, feature: int) -> list[np.ndarray]:
    """The live rows with small and with large values of `feature`: a covariate shift each."""
    values = data.X[data.live, feature]
    cut = np.median(values)
    return [data.live[values <= cut], data.live[values > cut]]


def test_estimate_tracks_realised_accuracy_and_f1_under_covariate_shift_on_breast_cancer() -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.metrics import f1_score

    data = _split(load_breast_cancer)
    model = _model(data.X[data.train], data.y[data.train])
    calibration = Calibration.fit(
        model.predict_proba(data.X[data.reference]), data.y[data.reference], model.classes_
    )
    realised, estimated = [], []
    for rows in _shifted_windows(data, feature=27):  # worst concave points: large tumours are harder
        predicted = model.predict(data.X[rows])
        figures = estimate(model.predict_proba(data.X[rows]), calibration)
        realised.append((np.mean(predicted == data.y[rows]), f1_score(data.y[rows], predicted)))
        estimated.append((figures["accuracy"], figures["f1"]))
        assert figures["calibrated"] and figures["rows"] == len(rows)
    (small_acc, _), (large_acc, _) = realised
    assert small_acc - large_acc > 0.04  # the shift costs several points of accuracy ...
    assert estimated[0][0] > estimated[1][0]  # ... and the estimate falls with it
    for (acc, f1), (est_acc, est_f1) in zip(realised, estimated, strict=True):
        assert abs(est_acc - acc) < 0.03 and abs(est_f1 - f1) < 0.03


def test_rows_with_a_nan_or_infinite_probability_are_left_out_and_counted_never_nan() -> None:
    """One NaN probability made the whole estimate NaN, which is not even valid JSON for `status --json`."""
    from sklearn.datasets import load_breast_cancer

    from registry.monitoring.estimate import ConfidenceWindow

    data = _split(load_breast_cancer)
    model = _model(data.X[data.train], data.y[data.train])
    calibration = Calibration.fit(
        model.predict_proba(data.X[data.reference]), data.y[data.reference], model.classes_
    )
    clean = model.predict_proba(data.X[data.live]).tolist()
    window = ConfidenceWindow()
    window.add([*clean, [float("nan"), 0.5], [None, None], [float("inf"), 0.0]], now=1.0)
    figures = window.estimate(calibration, now=1.0)
    assert figures["rows"] == len(clean) and figures["unusable_rows"] == 3
    assert figures == pytest.approx(estimate(clean, calibration) | {"unusable_rows": 3})
    json.loads(json.dumps(figures, allow_nan=False))  # what `status --json` prints must parse
    restarted = ConfidenceWindow()  # the saved window (orjson writes NaN as null) comes back whole
    restarted.restore(json.loads(json.dumps(window.entries()).replace("NaN", "null")), now=1.0)
    assert restarted.estimate(calibration, now=1.0) == figures
    nothing = estimate([[float("nan"), float("nan")]], calibration)
    assert nothing["accuracy"] is None and nothing["rows"] == 0 and nothing["unusable_rows"] == 1


def test_calibration_corrects_an_underconfident_multiclass_model_on_digits() -> None:
    from sklearn.datasets import load_digits

    data = _split(load_digits)
    model = _model(data.X[data.train], data.y[data.train])
    calibration = Calibration.fit(
        model.predict_proba(data.X[data.reference]), data.y[data.reference], model.classes_
    )
    assert abs(calibration.reference_estimate - calibration.reference_accuracy) < 0.02  # cross-fitted
    realised, estimated = [], []
    for rows in _shifted_windows(data, feature=5):
        probabilities = model.predict_proba(data.X[rows])
        realised.append(np.mean(model.predict(data.X[rows]) == data.y[rows]))
        estimated.append(estimate(probabilities, calibration)["accuracy"])
        raw = estimate(probabilities, None)
        assert raw["calibrated"] is False and abs(raw["accuracy"] - realised[-1]) > 0.2
    assert realised[0] - realised[1] > 0.04 and estimated[0] > estimated[1]
    assert all(abs(e - r) < 0.03 for e, r in zip(estimated, realised, strict=True))


@pytest.fixture(scope="module")
def cancer() -> SimpleNamespace:
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    data = _split(load_breast_cancer)
    frame = load_breast_cancer(as_frame=True).frame
    data.frame = frame.drop(columns=["target"])
    data.model = _model(data.frame.iloc[data.train], data.y[data.train])  # with the column names
    data.reference_frame = pd.DataFrame(data.frame.iloc[data.reference]).reset_index(drop=True)
    return data


def test_calibration_is_stored_with_the_reference_and_restored_byte_for_byte(tmp_path, cancer) -> None:
    fitted = Calibration.fit(
        cancer.model.predict_proba(cancer.reference_frame), cancer.y[cancer.reference], cancer.model.classes_
    )
    with Registry(home=tmp_path) as reg:
        reg.register(
            cancer.model,
            "cancer",
            reference=cancer.reference_frame,
            reference_labels=cancer.y[cancer.reference],
        )
        restored = reg.calibration("cancer:1")
        sample = reg.reference("cancer:1")
        exported = reg.export("cancer:1", tmp_path / "cancer.modeldeck")
        imported = reg.import_(exported, name="copy")
        copied = reg.calibration(imported.ref)
    assert restored is not None and copied is not None
    for name, array in fitted.to_arrays().items():
        assert restored.to_arrays()[name].tobytes() == array.tobytes(), name
        assert copied.to_arrays()[name].tobytes() == array.tobytes(), name
    assert sample.labels.tolist() == cancer.y[cancer.reference].tolist()


def test_without_labels_the_raw_probabilities_stand_in(tmp_path, cancer) -> None:
    with Registry(home=tmp_path) as reg:
        reg.register(cancer.model, "cancer", reference=cancer.reference_frame)
        assert reg.calibration("cancer:1") is None
    figures = estimate(cancer.model.predict_proba(cancer.frame.iloc[cancer.live]), None)
    assert figures["calibrated"] is False and 0.5 < figures["accuracy"] <= 1.0


def test_labels_that_do_not_fit_are_refused_and_models_without_probabilities_get_no_calibration(
    tmp_path, cancer
) -> None:
    from sklearn.linear_model import LinearRegression
    from sklearn.svm import LinearSVC

    labels = cancer.y[cancer.reference]
    X, y = cancer.reference_frame, labels
    with Registry(home=tmp_path) as reg:
        with pytest.raises(ReferenceMismatch, match="one label per row"):
            reg.register(cancer.model, "cancer", reference=X, reference_labels=labels[:-1])
        with pytest.raises(ReferenceMismatch, match=r"labels \['benign', 'malignant'\] are not classes"):
            reg.register(
                cancer.model, "cancer", reference=X, reference_labels=np.where(y == 1, "benign", "malignant")
            )
        with pytest.raises(ReferenceMismatch, match=r"50 labelled reference rows; .* at least 100"):
            reg.register(cancer.model, "cancer", reference=X[:50], reference_labels=labels[:50])
        with pytest.raises(ReferenceMismatch, match="for classifiers"):
            reg.register(LinearRegression().fit(X, y), "cancer", reference=X, reference_labels=y)
        reg.register(LinearSVC().fit(X, y), "svc", reference=X, reference_labels=y)
        assert reg.calibration("svc:1") is None and reg.reference("svc:1").labels is not None


def test_labelled_training_rows_the_model_gets_all_right_are_warned_about(tmp_path, cancer) -> None:
    from sklearn.ensemble import RandomForestClassifier

    from registry.calibration import CalibrationWarning

    X, y = cancer.frame.iloc[cancer.train], cancer.y[cancer.train]
    forest = RandomForestClassifier(30, random_state=0).fit(X, y)
    with Registry(home=tmp_path) as reg, pytest.warns(CalibrationWarning, match="if it was trained on them"):
        reg.register(forest, "forest", reference=X, reference_labels=y)


def test_register_cli_takes_the_label_column_out_of_the_reference_csv(home, tmp_path, cancer) -> None:
    import skops.io as sio

    model_file = tmp_path / "cancer.skops"
    sio.dump(cancer.model, model_file)
    csv = tmp_path / "reference.csv"
    cancer.reference_frame.assign(diagnosis=cancer.y[cancer.reference]).to_csv(csv, index=False)
    runner = CliRunner()
    base = ["register", str(model_file), "--name", "cancer", "--reference", str(csv)]
    wrong = runner.invoke(app, [*base, "--target", "label"])
    assert wrong.exit_code != 0 and "no column 'label' in the reference" in wrong.output + wrong.stderr
    done = runner.invoke(app, [*base, "--target", "diagnosis", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["signature"]["columns"][-1]["name"] == "worst fractal dimension"
    with Registry(home=home) as reg:
        calibration = reg.calibration("cancer:1")
    assert calibration is not None and calibration.reference_accuracy > 0.9


# ---------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, cancer) -> Iterator[SimpleNamespace]:
    from sklearn.svm import LinearSVC

    from registry.serving.client import SupervisorClient

    home = tmp_path_factory.mktemp("estimate")
    labels = cancer.y[cancer.reference]
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MODELDECK_DB_URL", raising=False)
        patch.setenv("MODELDECK_HOME", str(home))
        with Registry(home=home) as reg:
            reg.register(cancer.model, "cancer", reference=cancer.reference_frame, reference_labels=labels)
            svc = LinearSVC().fit(cancer.reference_frame, labels)
            reg.register(svc, "svc", reference=cancer.reference_frame, reference_labels=labels)
        client = SupervisorClient(home)
        client.ensure_running("--drift-every=1", "--metrics=127.0.0.1:0")
        try:
            yield SimpleNamespace(home=home, client=client)
        finally:
            stop_supervisor(client, home)


@pytest.fixture(scope="module")
def traffic(served, cancer) -> np.ndarray:
    """Deployments `cancer` and `svc`, each sent the live rows of large tumours (a covariate shift):
    the rows sent, in order."""
    rows = _shifted_windows(SimpleNamespace(X=cancer.frame.to_numpy(), live=cancer.live), feature=27)[1]
    for name in ("cancer", "svc"):
        served.client.deploy(f"{name}:1", name=name, port=free_port())
    with httpx.Client(timeout=10) as http:
        for name in ("cancer", "svc"):
            url = next(d["url"] for d in served.client.status()["deployments"] if d["name"] == name)
            for row in cancer.frame.iloc[rows].to_numpy().tolist():  # one row a request: each is sampled
                assert http.post(f"{url}/invocations", json={"inputs": [row]}).status_code == 200
    return rows


def _estimates(home: Path) -> dict:
    """Each deployment's estimated performance, as `modeldeck status --json` shows it."""
    result = CliRunner().invoke(app, ["status", "--json"], env={"MODELDECK_HOME": str(home)})
    deployments = json.loads(result.stdout)["deployments"]
    return {d["name"]: ((d.get("live") or {}).get("performance") or {}).get("estimated") for d in deployments}


@pytest.mark.slow
def test_status_and_prometheus_show_the_estimate_of_live_traffic(served, cancer, traffic) -> None:
    def status() -> dict:
        return _estimates(served.home)

    wait_until(
        lambda: (status()["cancer"] or {}).get("rows") == len(traffic), what="the estimate of every row"
    )
    estimated = status()
    realised = np.mean(cancer.model.predict(cancer.frame.iloc[traffic]) == cancer.y[traffic])
    assert estimated["cancer"]["calibrated"] is True
    assert abs(estimated["cancer"]["accuracy"] - realised) < 0.03
    assert (
        estimated["svc"]["accuracy"] is None
        and estimated["svc"]["reason"] == "the model has no predict_proba"
    )
    text = CliRunner().invoke(app, ["status"], env={"MODELDECK_HOME": str(served.home)}).stdout
    assert f"cancer: estimated: accuracy {estimated['cancer']['accuracy']:.3f}" in text
    assert "svc: estimated: none (the model has no predict_proba)" in text
    metrics = httpx.get(served.client.status()["supervisor"]["metrics"], timeout=10).text
    gauge = 'modeldeck_estimated_accuracy{deployment="cancer",model="cancer",version="1"} '
    line = next(x for x in metrics.splitlines() if x.startswith(gauge))
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(estimated["cancer"]["accuracy"], abs=0.02)
    assert 'modeldeck_estimated_f1{deployment="cancer"' in metrics
    assert 'modeldeck_estimated_accuracy{deployment="svc"' not in metrics


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_monitor_shows_the_estimate_under_the_realised_line_at_80x24(served, traffic) -> None:
    from console_deck import settle
    from console_deck import wait_until as wait_in

    from console.app import ModeldeckApp
    from console.screens.monitor import MonitorScreen

    deck = ModeldeckApp(served.home, refresh_seconds=0.2)
    async with deck.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")  # deployments, by name: cancer first
        await settle(pilot, deck)
        await pilot.press("m")
        assert isinstance(deck.screen, MonitorScreen) and deck.screen.deployment == "cancer"
        performance = lambda: str(deck.screen.query_one("#performance").render())  # noqa: E731
        # a pull at a time: the first estimate shown may cover fewer rows than were sent
        await wait_in(
            pilot, lambda: "estimated:" in performance() and f"· {len(traffic)} rows" in performance(), 20
        )
        line = next(x for x in performance().splitlines() if "estimated:" in x)
        assert f"· {len(traffic)} rows · calibrated" in line and len(line) <= 80


@pytest.mark.slow
def test_a_supervisor_restart_keeps_the_rows_the_estimate_is_computed_on(served, traffic) -> None:
    rows = lambda: (_estimates(served.home).get("cancer") or {}).get("rows")  # noqa: E731
    wait_until(lambda: rows() == len(traffic), what="the estimate of every row")
    stopped = CliRunner().invoke(app, ["supervisor", "stop"], env={"MODELDECK_HOME": str(served.home)})
    assert stopped.exit_code == 0, stopped.output
    served.client.ensure_running("--drift-every=1", "--metrics=127.0.0.1:0")
    served.client.wait_settled()
    wait_until(lambda: rows() is not None, what="the estimate after the restart")
    assert rows() == len(traffic)  # without the saved window: 0 rows until new traffic
