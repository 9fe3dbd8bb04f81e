"""The one-pass decoder of numeric `dataframe_split` bodies (`registry.serving.numeric_split`) only
ever accepts what the general path (`payloads.invocation_rows` through orjson and the signature's
checks) accepts, with the same values; everything else it leaves to the general path, whose errors
name the field and row. Checked on generated bodies and on the bodies it must never take."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.serving import payloads
from registry.serving.numeric_split import numeric_split_rows
from registry.signature import InputError, InputSchema

NAMES = ["a", "b", "c"]


def schema(dtype: str = "float64", nullable: bool = False) -> InputSchema:
    columns = [{"name": n, "kind": "numeric", "dtype": dtype, "nullable": nullable} for n in NAMES]
    return InputSchema({"columns": columns, "named": True})


def general(body: bytes, checked: InputSchema, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The general path's rows, or its InputError."""
    with monkeypatch.context() as patch:
        patch.setattr(payloads, "numeric_split_rows", lambda body, schema: None)
        try:
            return payloads.invocation_rows(body, "application/json", checked)
        except InputError as exc:
            return exc


VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
)
ROWS = st.lists(st.lists(VALUES, min_size=2, max_size=4), max_size=4)
COLUMNS = st.one_of(st.none(), st.just(NAMES), st.permutations(NAMES), st.just(["a", "b"]))


@settings(max_examples=300, deadline=None)
@given(rows=ROWS, columns=COLUMNS, index=st.booleans(), dtype=st.sampled_from(["float64", "float32"]))
def test_what_it_accepts_the_general_path_accepts_with_the_same_values(
    rows: list[list[Any]], columns: list[str] | None, index: bool, dtype: str
) -> None:
    frame: dict[str, Any] = {"data": rows}
    if columns is not None:
        frame["columns"] = list(columns)
    if index:
        frame["index"] = list(range(len(rows)))
    body = json.dumps({"dataframe_split": frame}).encode()
    checked = schema(dtype)
    fast = numeric_split_rows(body, checked)
    with pytest.MonkeyPatch.context() as patch:
        expected = general(body, checked, patch)
    if fast is None:
        return
    assert not isinstance(expected, InputError), (body, expected)
    assert fast == [[float(v) for v in row] for row in expected]
    assert all(type(v) is float for row in fast for v in row)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, true, 3]]}}', "number"),
        (b'{"dataframe_split": {"data": [[1, "2", 3]]}}', "number"),
        (b'{"dataframe_split": {"data": [[1, 2, null]]}}', "null"),
        (b'{"dataframe_split": {"data": [[1, 2, 1e400]]}}', "finite"),
        (b'{"dataframe_split": {"data": [[1, 2]]}}', "values"),
        (b'{"dataframe_split": {"data": []}}', "non-empty"),
        (b'{"dataframe_split": {"data": [[1, 2, 3]], "data": [[4, 5, 6]]}}', "more than once"),
        (b'{"dataframe_split": {"columns": ["a", "b", "b"], "data": [[1, 2, 3]]}}', "more than once"),
        (b'{"dataframe_split": {"data": [[1, 2, 3]]}, "inputs": [[1, 2, 3]]}', "exactly one"),
    ],
)
def test_bodies_it_leaves_get_the_general_paths_error(
    body: bytes, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = schema()
    assert numeric_split_rows(body, checked) is None
    with pytest.raises(InputError) as refused:
        payloads.invocation_rows(body, "application/json", checked)
    assert words in refused.value.message, refused.value.message


def test_float32_models_and_nullable_columns_take_the_general_path() -> None:
    beyond = b'{"dataframe_split": {"data": [[1, 2, 1e39]]}}'  # beyond float32, finite in float64
    assert numeric_split_rows(beyond, schema("float32")) is None
    with pytest.raises(InputError):
        payloads.invocation_rows(beyond, "application/json", schema("float32"))
    plain = b'{"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2.5, -3]]}}'
    assert numeric_split_rows(plain, schema("float32")) == [[1.0, 2.5, -3.0]]
    assert numeric_split_rows(plain, schema(nullable=True)) is None


@pytest.mark.parametrize(("depth", "status"), [(990, None), (5000, 400)])
def test_an_index_nested_deeper_than_python_recurses_is_no_500(depth: int, status: int | None) -> None:
    """orjson parses arrays nested up to 1,024 deep, past Python's recursion limit: the general path
    answers (the index is ignored), or refuses the body as JSON beyond that, and never raises a
    RecursionError (a 500)."""
    nested = b"[" * depth + b"]" * depth
    body = b'{"dataframe_split": {"data": [[1, 2, 3]], "index": ' + nested + b"}}"
    assert numeric_split_rows(body, schema()) is None
    if status is None:
        assert payloads.invocation_rows(body, "application/json", schema()) == [[1, 2, 3]]
    else:
        with pytest.raises(InputError) as refused:
            payloads.invocation_rows(body, "application/json", schema())
        assert refused.value.status == status and "JSON" in refused.value.message
