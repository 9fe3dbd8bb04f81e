"""Cost of one single-row Open Inference Protocol request, in-process (no sockets, no uvicorn).

    python benchmarks/oip_request.py [--requests 200] [--rounds 20]

A LogisticRegression on iris is registered in a temporary home and its model-server app is built as a
worker builds it; sequential requests go straight into the ASGI app. Each case is timed in rounds, the
cases taking turns; the best round's microseconds per request (as timeit reports: the machine is shared
and noise only adds) is printed with its ratio to the `predict only` case. Cases: outputs
`[{"name": "predict"}]` (one model call); no outputs (the spec's rule: every output, here predict and
predict_proba); and no outputs with binary tensor data both ways. To compare with an older tree, copy
this file into its benchmarks/ and run it there (it imports the registry of the tree it sits in); a
case that tree refuses prints its status instead of a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from common import unshadow

ROW = [5.1, 3.5, 1.4, 0.2]
HEADER = "Inference-Header-Content-Length"


def cases() -> dict[str, tuple[bytes, dict[str, str]]]:
    def json_body(**extra: Any) -> bytes:
        tensor = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}
        return orjson.dumps({"inputs": [tensor], **extra})

    raw = np.array([ROW], dtype="<f8").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [1, 4], "datatype": "FP64", "parameters": {"binary_data_size": 32}}
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return {
        "predict only": (json_body(outputs=[{"name": "predict"}]), {}),
        "no outputs (all)": (json_body(), {}),
        "binary, no outputs": (header + raw, {HEADER: str(len(header))}),
    }


def make_app(home: Path) -> Any:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from registry import Registry
    from registry.serving.server import create_app
    from registry.serving.worker import load_predictor

    X, y = load_iris(return_X_y=True, as_frame=True)
    with Registry(home=home, db_url=f"sqlite:///{home / 'registry.db'}") as reg:
        reg.register(LogisticRegression(max_iter=1000).fit(X, y), "iris", reference=X)
        predictor = load_predictor(reg, "iris")
    return create_app(predictor)


async def post(app: Any, body: bytes, headers: dict[str, str]) -> int:
    """One POST straight into the ASGI app (no HTTP client in the figure); its status."""
    path = "/v2/models/iris/infer"
    fields = [(b"content-length", str(len(body)).encode())]
    fields += [(key.lower().encode(), value.encode()) for key, value in headers.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": fields,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


async def measure(app: Any, requests: int, rounds: int) -> dict[str, float | str]:
    timings: dict[str, list[float]] = {name: [] for name in cases()}
    refused: dict[str, str] = {}
    for _ in range(rounds):
        for name, (body, headers) in cases().items():
            status = await post(app, body, headers)
            if status != 200:
                refused[name] = f"{status} (not supported by this tree)"
                continue
            start = time.perf_counter()
            for _ in range(requests):
                await post(app, body, headers)
            timings[name].append((time.perf_counter() - start) / requests * 1e6)
    return {name: refused.get(name) or min(values) for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    unshadow()
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(measure(make_app(Path(tmp)), args.requests, args.rounds))
    base = figures["predict only"]
    for name, value in figures.items():
        if isinstance(value, str):
            print(f"{name:<20} {value}")
        else:
            ratio = f"{value / base:.2f}x" if isinstance(base, float) else ""
            print(f"{name:<20} {value:8.1f} µs/request  {ratio}")


if __name__ == "__main__":
    main()
