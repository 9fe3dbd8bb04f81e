"""Registered models whose model-server apps the payload tests and the fuzzer call in-process.

Import as `payload_models` (pytest puts tests/ on sys.path). `register_models(home)` registers:

- `iris`: LogisticRegression on iris (numeric, named columns: the float fast path);
- `shop`: ColumnTransformer(OneHotEncoder(handle_unknown='error') on `city`, SimpleImputer on the
  nullable `basket` and `visits`) + Ridge (the DataFrame path, a strict encoder);
- `hidden`: the same encoder one ColumnTransformer deeper, where the schema cannot see its categories;
- `tree`: a DecisionTreeClassifier on iris (casts its input to float32);
- `narrow`: LogisticRegression on float32 iris columns (signature dtype float32);
- `multi`: a LinearRegression on iris with two targets (`predict` answers two values a row).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
SHOP_COLUMNS = ["city", "basket", "visits"]
CITIES = ["paris", "lyon", "nice"]


def shop_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "city": ["paris", "lyon", "nice", "paris", "lyon", "nice"] * 5,
            "basket": [10.0, 25.5, np.nan, 40.0, 5.0, 12.5] * 5,
            "visits": [1, 4, 2, 8, 1, 3] * 5,
        }
    )


def _shop_pipeline(nested: bool) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    encoder: Any = ColumnTransformer([("onehot", OneHotEncoder(handle_unknown="error"), ["city"])])
    if not nested:
        encoder = OneHotEncoder(handle_unknown="error")
    prepare = ColumnTransformer(
        [("city", encoder, ["city"]), ("numbers", SimpleImputer(), ["basket", "visits"])]
    )
    frame = shop_frame()
    spend = frame["visits"] * 3.0 + (frame["city"] == "paris") * 10
    return Pipeline([("prepare", prepare), ("fit", Ridge())]).fit(frame, spend)


def register_models(home: Path, only: tuple[str, ...] | None = None) -> None:
    """Register the models above (or `only` these) in the registry of `home` (SQLite)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from registry import Registry

    X, y = load_iris(return_X_y=True, as_frame=True)
    narrow = X.astype(np.float32)
    models = {
        "iris": lambda: (LogisticRegression(max_iter=1000).fit(X, y), X),
        "shop": lambda: (_shop_pipeline(nested=False), shop_frame()),
        "hidden": lambda: (_shop_pipeline(nested=True), shop_frame()),
        "tree": lambda: (DecisionTreeClassifier(random_state=0).fit(X, y), X),
        "narrow": lambda: (LogisticRegression(max_iter=1000).fit(narrow, y), narrow),
        "multi": lambda: (LinearRegression().fit(X, np.column_stack([y, 2.0 * y])), X),
    }
    with Registry(home=home, db_url=f"sqlite:///{home / 'registry.db'}") as reg:
        for name, fitted in models.items():
            if only is None or name in only:
                model, reference = fitted()
                reg.register(model, name, reference=reference)


def create_model_app(home: Path, ref: str, **options: Any) -> Any:
    """The ASGI app serving `ref` as a worker would (`redact=True` for a redacted deployment)."""
    from registry import Registry
    from registry.serving.server import create_app
    from registry.serving.worker import load_predictor

    redact = options.pop("redact", False)
    with Registry(home=home, db_url=f"sqlite:///{home / 'registry.db'}") as reg:
        predictor = load_predictor(reg, ref, redact=redact)
    return create_app(predictor, **options)


class AppClient:
    """A synchronous HTTP client of an ASGI app, in-process (httpx's ASGITransport on its own loop)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=app)
        self._client = httpx.AsyncClient(transport=transport, base_url="http://model")

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.request(method, path, **kwargs))

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()


def control_client(home: Path) -> tuple[AppClient, Any, list[bool]]:
    """The supervisor control app of `home` in-process (its supervisor not started: no workers run),
    the supervisor, and the `stop_servers` flags /shutdown was called with."""
    from registry.serving.control import create_control_app
    from registry.serving.supervisor import Policy, Supervisor

    supervisor = Supervisor(home, Policy(metrics_address=None))
    supervisor.reconciled.set()  # not started: an empty home has nothing to adopt (actions wait for this)
    shutdowns: list[bool] = []
    return AppClient(create_control_app(supervisor, shutdowns.append)), supervisor, shutdowns


@contextlib.contextmanager
def control_on_empty_home(home: Path) -> Iterator[tuple[AppClient, list[bool]]]:
    """`control_client` of `home` with MODELDECK_HOME set to it for as long as it is used."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELDECK_HOME", str(home))
        patch.delenv("MODELDECK_DB_URL", raising=False)
        client, supervisor, shutdowns = control_client(home)
        try:
            yield client, shutdowns
        finally:
            client.close()
            supervisor.registry.close()
