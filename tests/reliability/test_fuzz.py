"""Fuzzers: plausible-but-wrong request bodies for both serving protocols and the control API.

Bodies are built as JSON *text* (objects as key/value pairs, so keys can repeat; numbers as raw tokens,
so NaN, Infinity, 1e400 and 400-digit integers get through), from structures near what clients send:
the right keys with wrong types, wrong nesting, missing or repeated columns, empty arrays, unicode,
huge and tiny numbers, and CSV text. They go to the in-process apps of a numeric LogisticRegression
and of a pipeline with a strict OneHotEncoder. Figure: responses of 500 (or above) over ~400 bodies
per protocol = 0. Examples are derandomized, so every run sends the same bodies.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from helpers import error_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from payload_models import (
    IRIS_COLUMNS,
    SHOP_COLUMNS,
    AppClient,
    control_on_empty_home,
    create_model_app,
    register_models,
)

EXAMPLES = 400
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
COLUMNS = {"iris": IRIS_COLUMNS, "shop": SHOP_COLUMNS}


# ---------------------------------------------------------------------- JSON text: repeats, raw numbers
@dataclass
class Obj:
    """A JSON object as its key/value pairs (a key may repeat)."""

    pairs: list[tuple[str, Any]]


@dataclass
class Raw:
    """A token written as is (a number JSON allows but floats cannot hold, or NaN/Infinity)."""

    text: str


def render(value: Any) -> str:
    if isinstance(value, Obj):
        return "{" + ", ".join(f"{json.dumps(k)}: {render(v)}" for k, v in value.pairs) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(render, value)) + "]"
    if isinstance(value, Raw):
        return value.text
    return json.dumps(value)  # non-ASCII and lone surrogates as \\u escapes; NaN/Infinity as such


TOKENS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1e-400",
    "-0",
    "1e39",
    "-3.5e38",
    "1" + "0" * 400,
]
numbers = st.one_of(
    st.sampled_from([0, 1, 5.1, -2.5, 0.2, 3]),
    st.floats(),
    st.integers(-(10**20), 10**20),
    st.sampled_from(TOKENS).map(Raw),
)
texts = st.one_of(
    st.sampled_from(
        ["paris", "lyon", "nice", "SECRET-VALUE-123", "", "NaN", "1.5", "\u00e9t\u00e9", "\ud800"]
    ),
    st.text(max_size=6),
)
scalars = st.one_of(numbers, texts, st.none(), st.booleans())
cells = st.one_of(scalars, st.lists(scalars, max_size=2), st.just(Obj([("a", 1)])))
#: Valid values per column (so that some bodies are right, and a wrong one is near a right one).
VALID = {
    "city": st.sampled_from(["paris", "lyon", "nice"]),
    "basket": st.one_of(st.floats(0, 100), st.none()),
    "visits": st.integers(0, 9),
}


def objects(keys: st.SearchStrategy[str], values: st.SearchStrategy[Any], size: int = 5) -> Any:
    return st.lists(st.tuples(keys, values), max_size=size).map(Obj)


def anything(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), objects(keys, inner, 3)), max_leaves=5
    )


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of `choices`, each drawn `weight` times in `sum(weights)` (hypothesis' one_of is even)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(table.__getitem__)


def value_of(column: str) -> st.SearchStrategy[Any]:
    """A right value for `column` three times in four, else any cell."""
    return weighted((3, VALID.get(column, st.floats(0, 8))), (1, cells))


def with_extra(pairs: st.SearchStrategy[list[tuple[str, Any]]], extra: st.SearchStrategy[Any]) -> Any:
    """An object of `pairs`, with now and then an extra pair (a repeated or unknown key)."""
    more = weighted((3, st.just([])), (1, st.lists(extra, min_size=1, max_size=1)))
    return st.builds(lambda p, m: Obj([*p, *m]), pairs, more)


class ModelBodies:
    """The strategies of one model's bodies (built once: building strategies is what costs)."""

    def __init__(self, model: str) -> None:
        columns = self.column_names = COLUMNS[model]
        width = len(columns)
        self.names = weighted(
            (4, st.sampled_from(columns)),
            (1, st.sampled_from(["colour", "x0", ""])),
            (1, st.text(max_size=4)),
        )
        self.extra = st.tuples(self.names, cells)
        good_row = st.tuples(*(value_of(c) for c in columns)).map(list)
        any_row = st.lists(cells, min_size=max(0, width - 1), max_size=width + 1)
        self.rows = st.lists(weighted((4, good_row), (1, any_row)), max_size=3)
        ordered = st.permutations(columns).flatmap(
            lambda names: st.tuples(*(st.tuples(st.just(n), value_of(n)) for n in names)).map(list)
        )
        self.record = with_extra(ordered, self.extra)
        self.columns = with_extra(
            st.integers(0, 2).flatmap(
                lambda n: st.tuples(
                    *(st.tuples(st.just(c), st.lists(value_of(c), min_size=n, max_size=n)) for c in columns)
                ).map(list)
            ),
            st.tuples(self.names, st.lists(cells, max_size=2)),
        )
        self.mlflow = self._mlflow()
        self.csv = self._csv(width)
        self.oip = self._oip()

    def _mlflow(self) -> st.SearchStrategy[Any]:
        header = weighted(
            (2, st.permutations(self.column_names).map(lambda c: [("columns", c)])),
            (1, st.just([])),
            (1, st.lists(self.names, max_size=5).map(lambda c: [("columns", c)])),
        )
        split = st.builds(lambda h, rows: [*h, ("data", rows)], header, self.rows)
        records = st.lists(weighted((5, self.record), (1, cells)), max_size=3)
        form = weighted(
            (
                3,
                st.tuples(
                    st.just("dataframe_split"), weighted((5, with_extra(split, self.extra)), (1, cells))
                ),
            ),
            (3, st.tuples(st.just("dataframe_records"), records)),
            (2, st.tuples(st.sampled_from(["instances", "inputs"]), self.rows)),
            (2, st.tuples(st.sampled_from(["instances", "inputs"]), records)),
            (2, st.tuples(st.sampled_from(["instances", "inputs"]), self.columns)),
            (1, st.tuples(st.sampled_from(["instances", "inputs", "columns", "data"]), cells)),
        )
        body = with_extra(form.map(lambda pair: [pair]), form)
        return weighted((9, body), (1, anything(self.names)))

    def _csv(self, width: int) -> st.SearchStrategy[bytes]:
        cell = weighted(
            (4, st.sampled_from(["5.1", "2", "0.5", "paris", "lyon", "nice"])),
            (2, st.sampled_from(["nan", "inf", "-inf", "1e400", "1e39", "", " 2 ", '"a,b"', "atlantis"])),
            (1, st.text(max_size=4)),
        )
        header = weighted(
            (3, st.permutations(self.column_names)), (1, st.lists(self.names, max_size=width + 1))
        )
        table = st.tuples(
            header, st.lists(st.lists(cell, min_size=width - 1, max_size=width + 1), min_size=0, max_size=3)
        )
        lines = table.map(lambda t: "\n".join(",".join(r) for r in [t[0], *t[1]]).encode())
        return weighted((9, lines), (1, st.binary(max_size=16)))

    def _oip(self) -> st.SearchStrategy[Any]:
        width = len(self.column_names)
        flat = self.rows.map(lambda rows: [v for row in rows for v in row])
        shape = weighted(
            (3, self.rows.map(lambda rows: [len(rows), width])),
            (1, st.lists(st.integers(-1, 5), max_size=3)),
            (1, cells),
        )
        matrix = with_extra(
            st.builds(
                lambda name, shape, datatype, data: [
                    ("name", name),
                    ("shape", shape),
                    ("datatype", datatype),
                    ("data", data),
                ],
                weighted((3, st.just("x")), (1, self.names), (1, cells)),
                shape,
                DATATYPES,
                weighted((3, flat), (2, self.rows), (1, cells)),
            ),
            st.tuples(
                st.sampled_from(["parameters", "data", "name", "shape", "datatype"]), TENSOR_PARAMETERS
            ),
        )
        named = st.builds(
            lambda obj, datatype: [
                Obj([("name", n), ("shape", [len(v)]), ("datatype", datatype), ("data", v)])
                for n, v in obj.pairs
            ],
            self.columns,
            DATATYPES,
        )
        inputs = weighted((3, named), (3, st.lists(matrix, min_size=1, max_size=2)), (1, cells))
        parameters = weighted(
            (3, st.just(Obj([("content_type", "pd")]))),
            (1, objects(st.just("content_type"), cells)),
            (1, cells),
        )
        outputs = weighted(
            (2, st.just([Obj([("name", "predict_proba")])])),
            (2, st.just([Obj([("name", "predict")])])),
            (
                1,
                st.builds(lambda p: [Obj([("name", "predict_proba"), ("parameters", p)])], TENSOR_PARAMETERS),
            ),
            (1, st.lists(objects(st.just("name"), cells, 2), max_size=2)),
            (1, cells),
        )
        extra = st.one_of(
            st.tuples(st.just("parameters"), parameters),
            st.tuples(st.just("outputs"), outputs),
            st.tuples(st.sampled_from(["id", "inputs"]), cells),
        )
        body = st.builds(lambda i, more: Obj([("inputs", i), *more]), inputs, st.lists(extra, max_size=2))
        return weighted(
            (9, body), (1, anything(st.sampled_from(["inputs", "outputs", "parameters", "data"])))
        )


#: An input's or output's `parameters`: the extension keys with right and wrong values, or not an object.
TENSOR_PARAMETERS = weighted(
    (
        2,
        objects(
            st.sampled_from(["binary_data_size", "binary_data", "classification", "content_type"]), cells, 2
        ),
    ),
    (1, cells),
)


#: An input's datatype: the usual one, any of the protocol's, a near miss or a value of the wrong type.
DATATYPES = weighted(
    (4, st.just("FP64")),
    (2, st.sampled_from(["FP32", "INT64", "INT32", "BOOL", "BYTES", "UINT8", "FP16"])),
    (1, st.sampled_from(["fp64", "FLOAT64", "", "STRING"])),
    (2, st.one_of(st.lists(scalars, max_size=2), st.just(Obj([("FP64", 1)])), numbers, st.booleans())),
)
BODIES = {model: ModelBodies(model) for model in COLUMNS}


# ---------------------------------------------------------------------- fixtures and the figure
@pytest.fixture(scope="module")
def model_apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AppClient]]:
    home = tmp_path_factory.mktemp("fuzz-home")
    register_models(home, only=("iris", "shop"))
    clients = {name: AppClient(create_model_app(home, name)) for name in COLUMNS}
    yield clients
    for client in clients.values():
        client.close()


def no_server_errors(statuses: Counter[int], failures: list[str]) -> None:
    """The figure: responses of 500 or above = 0, over at least EXAMPLES bodies."""
    assert sum(statuses.values()) >= EXAMPLES
    assert sum(n for status, n in statuses.items() if status >= 500) == 0, failures[:5]


@pytest.mark.parametrize("protocol", ["mlflow", "oip"])
def test_no_request_body_gets_a_500(model_apps, protocol):
    statuses: Counter[int] = Counter()
    failures: list[str] = []

    def record(response: Any, body: bytes) -> None:
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{body[:300]!r} -> {response.text[:300]}")
        elif response.status_code >= 400:  # in the protocol's own shape, its message naming the field
            error = error_of(response)
            field, message = error["field"], error["message"]
            assert field is None or field in message or repr(field) in message, error

    models = st.sampled_from(sorted(COLUMNS))

    @FUZZ
    @given(data=st.data())
    def mlflow(data: st.DataObject) -> None:
        model = data.draw(models)
        kind = data.draw(st.sampled_from(["json", "json", "json", "csv"]))
        if kind == "csv":
            body = data.draw(BODIES[model].csv)
            media = data.draw(st.sampled_from(["text/csv", "text/csv; charset=utf-8", "application/json"]))
        else:
            body = render(data.draw(BODIES[model].mlflow)).encode("utf-8", "surrogatepass")
            media = data.draw(
                st.sampled_from(["application/json", "application/json; charset=utf-8", "text/csv"])
            )
        record(model_apps[model].post("/invocations", content=body, headers={"content-type": media}), body)

    @FUZZ
    @given(data=st.data())
    def oip(data: st.DataObject) -> None:
        model = data.draw(models)
        body = render(data.draw(BODIES[model].oip)).encode("utf-8", "surrogatepass")
        path = data.draw(
            st.sampled_from([f"/v2/models/{model}/infer", f"/v2/models/{model}/versions/1/infer"])
        )
        record(model_apps[model].post(path, content=body), body)

    (mlflow if protocol == "mlflow" else oip)()
    no_server_errors(statuses, failures)
    assert statuses[200] > 0 and statuses[422] > 0 and statuses[400] > 0, statuses  # every layer is reached


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppClient, list[bool]]]:
    with control_on_empty_home(tmp_path_factory.mktemp("fuzz-control")) as control:
        yield control


OPTIONS = {
    "batching": st.sampled_from(["auto", "on", "off", "sometimes"]),
    "max_body_mb": st.one_of(st.floats(-1, 100), st.integers(-5, 5)),
    "redact": st.booleans(),
    "no_auth": st.booleans(),
    "monitoring": st.booleans(),
}
#: Each control field with a value of its right type (three times in four) or any value.
FIELDS = {
    "ref": st.sampled_from(["iris", "iris:2", "iris@prod", "no such:model", "../x"]),
    "name": st.sampled_from(["iris", "a/b", "..", ""]),
    "host": st.sampled_from(["127.0.0.1", "::1", "nowhere"]),
    "port": st.integers(-1, 70000),
    "workers": st.integers(-1, 100),
    "to": st.integers(-1, 3),
    "options": st.lists(
        st.sampled_from(sorted(OPTIONS)).flatmap(
            lambda k: st.tuples(st.just(k), weighted((3, OPTIONS[k]), (1, cells)))
        ),
        max_size=3,
    ).map(Obj),
    "actor": texts,
    "reason": texts,
    "stop_servers": st.booleans(),
}
CONTROL_PATHS = ["/deploy", "/rollback", "/stop", "/scale", "/shutdown", "/monitor", "/status"]
control_pairs = st.sampled_from(sorted(FIELDS)).flatmap(
    lambda k: st.tuples(st.just(k), weighted((3, FIELDS[k]), (1, cells)))
)
control_bodies = weighted(
    (
        8,
        st.lists(control_pairs, max_size=6).map(
            lambda pairs: render(Obj(pairs)).encode("utf-8", "surrogatepass")
        ),
    ),
    (1, anything(st.sampled_from(sorted(FIELDS))).map(lambda v: render(v).encode("utf-8", "surrogatepass"))),
    (1, st.binary(max_size=16)),
)
cursors = weighted((1, st.integers(-(10**30), 10**30).map(str)), (1, st.text(max_size=8)))


def test_no_control_request_gets_a_500(control):
    """Every control route with wrong-typed fields and broken bodies (an empty home: no action starts
    a worker, so the supervisor answers from its checks and the registry)."""
    client, _ = control
    statuses: Counter[int] = Counter()
    failures: list[str] = []

    @FUZZ
    @given(path=st.sampled_from(CONTROL_PATHS), body=control_bodies, cursor=cursors)
    def fuzz(path: str, body: bytes, cursor: str) -> None:
        if path in ("/monitor", "/status"):
            response = client.get(path, params={"cursor": cursor, "name": "iris"})
        else:
            response = client.post(path, content=body)
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{path} {body[:200]!r} {cursor!r} -> {response.text[:300]}")

    fuzz()
    no_server_errors(statuses, failures)
    assert statuses[400] > 0 and statuses[404] > 0 and statuses[200] > 0, statuses
