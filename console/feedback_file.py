"""Labels from a file for `modeldeck feedback`: CSV with a header, or JSON lines.

CSV columns: `request_id`, optional `row` (default 0), `label`. JSON lines: one object a line, each
what `POST /feedback` takes (`{"request_id", "row", "label"}` or `{"request_id", "labels": [...]}`).
"""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson


class FeedbackFileError(ValueError):
    """A file that is not labels: says which line and why."""


def read_labels(text: str) -> list[dict[str, Any]]:
    """The label entries of a CSV or JSON-lines text (JSON lines when its first character is `{`)."""
    text = text.removeprefix("\ufeff")  # a UTF-8 byte order mark, as spreadsheets write
    if text.lstrip().startswith("{"):
        return _json_lines(text)
    if text.lstrip().startswith("["):
        raise FeedbackFileError("JSON lines expected, not a JSON array: one label object a line")
    return _csv(text)


def _json_lines(text: str) -> list[dict[str, Any]]:
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                entries.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise FeedbackFileError(f"line {number} is not JSON: {exc}") from None
    return entries


def _csv(text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = {"request_id", "label"} - set(reader.fieldnames or [])
    if missing:
        raise FeedbackFileError(f"the CSV header lacks {', '.join(sorted(missing))} (request_id[,row],label)")
    entries = []
    for number, record in enumerate(reader, 2):
        entry: dict[str, Any] = {"request_id": record["request_id"], "label": record["label"]}
        if record.get("row") not in (None, ""):
            try:
                entry["row"] = int(record["row"])
            except ValueError:
                raise FeedbackFileError(
                    f"line {number}: row {record['row']!r} is not a whole number"
                ) from None
        entries.append(entry)
    return entries
