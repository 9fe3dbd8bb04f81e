"""The typed control protocol: strict decoding of requests with errors naming the field, and answers
whose JSON is the same, key for key and in order, as the dictionaries they replaced."""

from __future__ import annotations

import json
from typing import Any

import pytest

from registry.serving.options import DEPLOY_OPTIONS, OptionError, check_options
from registry.serving.processes import LOADING, SERVING, STANDBY
from registry.serving.protocol import (
    OMIT,
    DeploymentState,
    DeploymentStatus,
    DeployRequest,
    ErrorAnswer,
    ErrorBody,
    MonitorSnapshot,
    Role,
    ScaleRequest,
    Status,
    Stopped,
    WorkerState,
    WorkerStatus,
)

WORKER = {"pid": 41, "version": 2, "role": "active", "state": "serving", "uptime_s": 12.5}
DEPLOYMENT = {
    "name": "iris",
    "model": "iris",
    "version": 2,
    "standby_version": 1,
    "host": "127.0.0.1",
    "port": 8080,
    "workers": 1,
    "options": {"auth": False, "redact": True},
    "updated_at": "2026-12-02T20:00:00+00:00",
    "url": "http://127.0.0.1:8080",
    "outside_url": None,
    "status": "running",
    "message": "",
    "restarts": 0,
    "workers_running": 1,
    "processes": [WORKER, {**WORKER, "pid": 42, "version": 1, "role": "standby", "state": "standby"}],
}
STATUS = {
    "supervisor": {
        "pid": 7,
        "home": "/h",
        "since": 1.5,
        "settled": True,
        "metrics": None,
        "metrics_note": "",
        "targets": "/h/prometheus/targets.json",
        "otlp": None,
    },
    "deployments": [DEPLOYMENT],
}


def error(cls: Any, body: Any) -> OptionError:
    with pytest.raises(OptionError) as caught:
        cls.decode(body)
    return caught.value


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"ref": "iris", "colour": "blue"}, "colour", "is not a field of this request"),
        ({"ref": "iris", "port": 80.5}, "port", "must be an integer, not a number"),
        ({"ref": "iris", "workers": "2"}, "workers", "must be an integer, not a string"),
        ({"ref": "iris", "options": []}, "options", "must be an object, not a list"),
        ({"ref": None}, "ref", "is required: a string"),
        ({"ref": True}, "ref", "must be a string, not a boolean"),
    ],
)
def test_a_request_that_does_not_fit_names_the_field(body, field, says):
    problem = error(DeployRequest, body)
    assert problem.field == field
    assert str(problem).startswith(f"'{field}' {says}")


def test_a_request_decodes_to_its_typed_fields_with_defaults_for_null_and_absent():
    request = DeployRequest.decode({"ref": "iris:2", "port": 8080, "name": None, "options": {"redact": True}})
    assert request == DeployRequest("iris:2", None, None, 8080, None, {"redact": True}, "", "")
    assert ScaleRequest.decode({"name": "iris", "workers": 3, "actor": "ops"}).workers == 3


def test_an_unknown_state_is_refused_naming_the_field():
    problem = error(WorkerStatus, {**WORKER, "state": "sleeping"})
    assert problem.field == "state"
    assert "must be one of loading, loaded, standby, serving, draining, stopped, failed" in str(problem)
    nested = error(Status, {**STATUS, "deployments": [{**DEPLOYMENT, "status": "on fire"}]})
    assert nested.field == "deployments[0].status"
    assert "crash-looping" in str(nested) and "'on fire'" in str(nested)


def test_answers_decode_to_enums_and_read_like_their_json():
    status = Status.decode(STATUS)
    deployment = status.deployments[0]
    assert deployment.status is DeploymentState.RUNNING
    assert [p.role for p in deployment.processes] == [Role.ACTIVE, Role.STANDBY]
    assert deployment.processes[0].state is WorkerState.SERVING
    assert status["deployments"][0]["processes"][1]["pid"] == 42  # scripts read them like the JSON
    assert "token" not in deployment and deployment.get("note") is None
    with pytest.raises(KeyError):
        deployment["token"]


def test_answers_ignore_fields_a_newer_supervisor_adds():
    assert WorkerStatus.decode({**WORKER, "cpu": 0.5}).pid == 41


@pytest.mark.parametrize("extra", [{}, {"token": None}, {"token": "s3cret", "note": "already serves"}])
def test_answers_encode_to_the_same_json_key_for_key(extra):
    """What `--json` prints: the same keys in the same order, optional ones only when present."""
    body = {**DEPLOYMENT, **extra}
    assert json.dumps(DeploymentStatus.decode(body).as_dict()) == json.dumps(body)
    status = {**STATUS, "deployments": [body]}
    assert json.dumps(Status.decode(status).as_dict()) == json.dumps(status)
    assert Stopped("iris").as_dict() == {"name": "iris", "status": "stopped"}


def test_an_error_answer_names_its_field_only_when_there_is_one():
    assert ErrorAnswer(ErrorBody("bad", [], OMIT)).as_dict() == {"error": {"message": "bad", "log": []}}
    answer = ErrorAnswer(ErrorBody("bad", ["x"], "port")).as_dict()
    assert answer == {"error": {"message": "bad", "log": ["x"], "field": "port"}}


def test_a_monitor_snapshot_round_trips():
    figures = {
        "live": {"t": 1.0, "requests": 3},
        "points": [{"t": 1.0, "requests": 3}],
        "drift": None,
        "performance": {"realised": None, "estimated": {"accuracy": 0.9}},
    }
    snapshot = {
        "cursor": 5,
        "host": {"t": 1.0, "cpu": 12.0},
        "deployments": {"iris": figures},
        "monitoring": {
            "rollups": {},
            "pull_errors": {"iris": 1},
            "sample_dropped": {},
            "outcomes": {},
            "store_error": None,
        },
    }
    decoded = MonitorSnapshot.decode(snapshot)
    assert decoded.deployments["iris"].performance.estimated == {"accuracy": 0.9}
    assert decoded.monitoring.pull_errors == {"iris": 1}
    assert json.dumps(decoded.as_dict()) == json.dumps(snapshot)


def test_worker_states_are_defined_once():
    assert (LOADING, STANDBY, SERVING) == (WorkerState.LOADING, WorkerState.STANDBY, WorkerState.SERVING)
    assert SERVING == "serving"  # a StrEnum: the worker's reports and the state file keep their strings


def test_deploy_options_have_one_definition_with_type_and_check():
    assert set(DEPLOY_OPTIONS) >= {"batching", "max_body_mb", "redact", "max_connections", "otlp"}
    assert check_options({"max_body_mb": 5, "redact": True}) == {"max_body_mb": 5.0, "redact": True}
    with pytest.raises(OptionError, match="unknown deployment option 'colour'"):
        check_options({"colour": "blue"})
