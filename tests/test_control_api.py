"""The supervisor's control API in-process: client mistakes are a 400 naming the field, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from payload_models import AppClient, control_on_empty_home


@pytest.fixture(scope="module")
def supervised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppClient, list[bool]]]:
    """One control app on an empty home for the module (no model: no action starts a worker)."""
    with control_on_empty_home(tmp_path_factory.mktemp("control-home")) as control:
        yield control


@pytest.fixture
def control(supervised: tuple[AppClient, list[bool]]) -> tuple[AppClient, list[bool]]:
    supervised[1].clear()
    return supervised


def error_of(response: Any, status: int = 400) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]["message"]


@pytest.mark.parametrize("cursor", ["abc", "1.5", "9" * 5000, "0x10"])
def test_a_bad_monitor_cursor_is_a_400_naming_it(control, cursor):
    client, _ = control
    assert "'cursor'" in error_of(client.get(f"/monitor?cursor={cursor}"))
    assert client.get("/monitor?cursor=0").status_code == 200
    assert client.get("/monitor?cursor=").status_code == 200


@pytest.mark.parametrize("path", ["/deploy", "/rollback", "/stop", "/scale", "/shutdown"])
@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[1, 2]", b'"deploy"', b"NaN"])
def test_bodies_that_are_not_a_json_object_are_a_400(control, path, body):
    client, shutdowns = control
    message = error_of(client.post(path, content=body))
    assert "request body" in message
    assert shutdowns == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/deploy", {}, "ref"),
        ("/deploy", {"ref": 3}, "ref"),
        ("/deploy", {"ref": "iris", "port": "8080"}, "port"),
        ("/deploy", {"ref": "iris", "port": True}, "port"),
        ("/deploy", {"ref": "iris", "workers": 1.5}, "workers"),
        ("/deploy", {"ref": "iris", "name": ["a"]}, "name"),
        ("/deploy", {"ref": "iris", "host": {}}, "host"),
        ("/deploy", {"ref": "iris", "options": "redact"}, "options"),
        ("/deploy", {"ref": "iris", "options": {"max_body_mb": "x"}}, "options.max_body_mb"),
        ("/deploy", {"ref": "iris", "options": {"redact": "yes"}}, "options.redact"),
        ("/deploy", {"ref": "iris", "actor": 1}, "actor"),
        ("/rollback", {"name": "iris", "to": "2"}, "to"),
        ("/rollback", {}, "name"),
        ("/stop", {"name": None}, "name"),
        ("/scale", {"name": "iris"}, "workers"),
        ("/scale", {"name": "iris", "workers": "2"}, "workers"),
        ("/scale", {"name": "iris", "workers": 2, "reason": 5}, "reason"),
        ("/shutdown", {"stop_servers": "yes"}, "stop_servers"),
    ],
)
def test_wrong_typed_fields_are_a_400_naming_the_field(control, path, body, field):
    client, shutdowns = control
    message = error_of(client.post(path, json=body))
    assert message.startswith(f"'{field}' "), message
    assert shutdowns == []


def test_well_typed_requests_reach_the_supervisor(control):
    client, shutdowns = control
    assert "no model" in error_of(client.post("/deploy", json={"ref": "iris", "port": 8080}), 404)
    assert "no deployment" in error_of(client.post("/stop", json={"name": "iris"}), 404)
    assert client.post("/shutdown", content=b"").status_code == 200
    assert client.post("/shutdown", json={"stop_servers": True}).status_code == 200
    assert shutdowns == [False, True]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/deploy", {"ref": "iris", "workerz": 2}, "workerz"),
        ("/rollback", {"name": "iris", "version": 2}, "version"),
        ("/stop", {"name": "iris", "force": True}, "force"),
        ("/scale", {"name": "iris", "workers": 2, "min": 1}, "min"),
        ("/shutdown", {"stop_server": True}, "stop_server"),
    ],
)
def test_unknown_fields_are_a_400_naming_the_field(control, path, body, field):
    client, shutdowns = control
    response = client.post(path, json=body)
    message = error_of(response)
    assert message.startswith(f"'{field}' is not a field of this request"), message
    assert response.json()["error"]["field"] == field
    assert shutdowns == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_connections": "100"}, "options.max_connections"),
        ({"idle_timeout": True}, "options.idle_timeout"),
        ({"otlp": 4318}, "options.otlp"),
    ],
)
def test_every_option_has_its_json_type_checked(control, options, field):
    """The option types come from the one table (`DEPLOY_OPTIONS`), not a second list in the API."""
    client, _ = control
    response = client.post("/deploy", json={"ref": "iris", "options": options})
    assert error_of(response).startswith(f"'{field}' must be "), response.text
    assert response.json()["error"]["field"] == field
