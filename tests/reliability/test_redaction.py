"""A redacted deployment under a real supervisor: input values never come back, in bodies or in logs.

The attack: a client (or whoever reads responses and logs) gets input values echoed back. Requests
carrying a marker value in every form a client could send (an unknown category, a wrong type, a
repeated column, CSV and OIP) go to real uvicorn workers started by a real supervisor with `--redact`;
then every response body and every line of every log file in the home is searched for the marker.
Figures: responses echoing it = 0, log lines echoing it = 0, responses of 500 = 0.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import free_port, stop_supervisor
from payload_models import SHOP_COLUMNS, register_models

from registry.serving.client import SupervisorClient

SECRET = "SECRET-VALUE-123"


@pytest.fixture
def redacted(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A supervisor serving `shop` (strict encoder the schema sees) and `hidden` (one it cannot see),
    both redacted; the home and each deployment's URL."""
    home = tmp_path / "home"
    home.mkdir()
    register_models(home, only=("shop", "hidden"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELDECK_HOME", str(home))
        patch.delenv("MODELDECK_DB_URL", raising=False)
        client = SupervisorClient(home)
        client.ensure_running("--metrics=off")
        try:
            urls = {}
            for name in ("shop", "hidden"):
                port = free_port()
                client.deploy(name, port=port, options={"redact": True})
                urls[name] = f"http://127.0.0.1:{port}"
            yield home, urls
        finally:
            stop_supervisor(client, home)


def bodies(model: str) -> list[tuple[str, str, bytes]]:
    """(path, content type, body) of requests that each carry SECRET as an input value."""
    good = {"city": "paris", "basket": 10.0, "visits": 2}
    records = [
        {**good, "city": SECRET},
        {**good, "basket": SECRET},
        {**good, "visits": SECRET},
    ]
    json_bodies = [{"dataframe_records": [good, record]} for record in records]
    json_bodies += [
        {"dataframe_split": {"columns": SHOP_COLUMNS, "data": [list(r.values()) for r in records]}},
        {"instances": [[SECRET, 1.0, 2]]},
        {"inputs": {"city": [SECRET], "basket": [1.0], "visits": [2]}},
    ]
    sent = [("/invocations", "application/json", json.dumps(b).encode()) for b in json_bodies]
    repeated = (
        b'{"dataframe_records": [{"city": "%s", "city": "paris", "basket": 1, "visits": 2}]}'
        % SECRET.encode()
    )
    sent.append(("/invocations", "application/json", repeated))
    sent.append(("/invocations", "text/csv", f"city,basket,visits\nparis,1,2\n{SECRET},1,2\n".encode()))
    sent.append(("/invocations", "text/csv", f"city,basket,visits\nparis,{SECRET},2\n".encode()))
    columns = {"city": [SECRET], "basket": [1.0], "visits": [2]}
    oip = {
        "parameters": {"content_type": "pd"},
        "inputs": [{"name": n, "shape": [1], "datatype": "BYTES", "data": v} for n, v in columns.items()],
    }
    sent.append((f"/v2/models/{model}/infer", "application/json", json.dumps(oip).encode()))
    return sent


def test_a_redacted_deployment_echoes_no_input_value_in_bodies_or_logs(redacted):
    home, urls = redacted
    statuses: Counter[int] = Counter()
    echoed: list[str] = []
    for model, url in urls.items():
        with httpx.Client(base_url=url, timeout=30) as client:
            assert (
                client.post(
                    "/invocations", json={"dataframe_records": [{"city": "nice", "basket": 1.0, "visits": 2}]}
                ).status_code
                == 200
            )
            for path, media, body in bodies(model):
                response = client.post(path, content=body, headers={"content-type": media})
                statuses[response.status_code] += 1
                if SECRET in response.text:
                    echoed.append(f"{model} {path} {response.status_code} {response.text[:200]}")
    assert sum(statuses.values()) == 2 * len(bodies("shop"))
    assert echoed == []
    assert sum(n for status, n in statuses.items() if status >= 500) == 0, statuses
    assert set(statuses) <= {400, 422}, statuses
    logs = sorted((home / "logs").glob("*.log*"))
    assert {p.name for p in logs} >= {"shop.log", "hidden.log"}
    assert "serving" in (home / "logs" / "shop.log").read_text()  # the workers' own log file
    lines = [
        line for path in logs for line in path.read_text(errors="replace").splitlines() if SECRET in line
    ]
    assert lines == []
