"""The prediction and label store: every prediction kept for joining with the labels that come later.

One SQLite file in WAL mode, `$MODELDECK_HOME/outcomes/outcomes.sqlite` (directory 0700, files 0600),
written by every worker of every deployment (each through its own `PredictionRecorder`, off the
request path), by `POST /feedback`, by `modeldeck feedback` and by `Registry.feedback`; read by the
supervisor, which computes realised performance from it and prunes it.

Every row belongs to a deployment: one deployment's clients cannot touch another's predictions or labels.

- `prediction`: one row per request: deployment, request id, model, version, time, how many rows it
  had, their predictions (a JSON array, one per row) and nullable `probabilities` (a JSON array of
  each row's class probabilities, kept when the request asked for them). The first request with a
  (deployment, request id) stays: a later one with the same key (a client reusing a request id) is
  not stored, and its rows are counted as `predictions_collided`.
- `label`: deployment, request id, row, the label, when it arrived (it joins the prediction of that row
  of that request). A label replaces an earlier one for
  the same row (last wins, counted as a duplicate). A label whose prediction is not (yet) known is kept
  `pending_seconds` in case the prediction is flushed later, then dropped and counted as expired; so
  are the oldest beyond `max_pending` pending labels.
- `counter`: totals shown by Prometheus (labels by outcome, predictions dropped or collided).

Bounded: predictions older than `max_age` or stored before the newest `max_rows` (counted in rows,
whole requests at a time) are deleted with their labels.
The schema's version is `PRAGMA user_version` (`SCHEMA_VERSION`); a file of an older version is
emptied and recreated when opened (it only caches a bounded window of predictions).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from registry.files import UnsafePath, checked_private_dir, open_private

log = logging.getLogger("modeldeck.outcomes")

DIRECTORY = "outcomes"
FILE = "outcomes.sqlite"
DEFAULT_MAX_ROWS = 1_000_000
DEFAULT_MAX_AGE = 7 * 24 * 3600.0
DEFAULT_PENDING_SECONDS = 24 * 3600.0
#: A client's request id is kept if it is a short token of these characters; else one is generated.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
OUTCOMES = ("accepted", "duplicate", "unknown", "expired")

#: The store's schema version, kept in `PRAGMA user_version`. A file of another version (an older
#: modeldeck's) is emptied and recreated on open: it only caches a bounded window of predictions, and
#: keying rows by deployment cannot be added to rows that lack it.
#:
#: Version 4 keeps a request, not each of its rows, and two B-trees per request instead of four per row:
#: every worker writes every prediction, so what a row costs is paid on the requests' CPU (a 100-row
#: request cost 100 rows). `prediction` is a rowid table (in the order requests were stored, which
#: bounds it by count without a time index), with the (deployment, request id) key for labels and one
#: (deployment, version, model, t, rows) index that serves every read: a read by model or over all
#: deployments walks that index's distinct (deployment, version, model) prefixes (`_streams`; a
#: deployment may serve version 1 of one model, then version 1 of another).
SCHEMA_VERSION = 4
#: Rows of a request are numbered below this (a larger row cannot be a prediction's; SQLite's integers
#: would overflow far beyond it).
MAX_ROW = 2**31
#: At most this many labels in one `POST /feedback` body (more: 413); a file is sent in such batches.
MAX_LABELS_PER_REQUEST = 10_000
#: At most this many pending labels (whose prediction is not known) are kept; the oldest beyond go,
#: counted as expired, so unknown ids cannot fill the disk.
DEFAULT_MAX_PENDING = 100_000
#: Labels are written in transactions of at most this many, so workers' prediction writes interleave.
LABELS_PER_TRANSACTION = 1_000
#: Seconds a write waits for another writer's lock before it fails (a worker then retries once).
BUSY_TIMEOUT = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS prediction (
    deployment TEXT NOT NULL, request_id TEXT NOT NULL, model TEXT NOT NULL, version INTEGER NOT NULL,
    t REAL NOT NULL, rows INTEGER NOT NULL, predictions TEXT NOT NULL, probabilities TEXT,
    UNIQUE (deployment, request_id)
);
CREATE INDEX IF NOT EXISTS prediction_by_version ON prediction (deployment, version, model, t, rows);
CREATE TABLE IF NOT EXISTS label (
    deployment TEXT NOT NULL, request_id TEXT NOT NULL, row_index INTEGER NOT NULL,
    label TEXT NOT NULL, t REAL NOT NULL,
    PRIMARY KEY (deployment, request_id, row_index)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS label_by_time ON label (t);
CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def request_id(given: str | None) -> str:
    """The client's request id if it is a sane token (letters, digits, `._:-`, up to 128), else new."""
    if given and _SANE_ID.fullmatch(given):
        return given
    return new_request_id()


def new_request_id() -> str:
    """32 hex digits: the time in nanoseconds, then 64 random bits (unguessable, as `secrets` makes them).

    Time first, so that a worker's ids sort in the order it made them: the prediction store's primary
    key (deployment, request_id, row) then grows at its end like its time indexes, instead of taking
    each row to a random page of a large table (a random id cost about 4x more CPU per stored row, on
    a table of 180,000 rows, and more as the table grows towards its million). The time never goes
    back within a process (a clock stepped back, or one coarser than a nanosecond: macOS's)."""
    global _last_id_time, _random_hex, _random_at
    _last_id_time = max(time.time_ns(), _last_id_time + 1)
    at = _random_at
    if at >= len(_random_hex):  # drawn in bulk: one system call per `_IDS_PER_DRAW` ids
        _random_hex, at = os.urandom(8 * _IDS_PER_DRAW).hex(), 0
    _random_at = at + 16
    return f"{_last_id_time:016x}{_random_hex[at : at + 16]}"


_last_id_time = 0
_IDS_PER_DRAW = 256
_random_hex, _random_at = "", 0


def _forget_random_bits() -> None:
    """A forked worker draws its own: siblings sharing the parent's unused bits would share ids."""
    global _random_hex, _random_at
    _random_hex, _random_at = "", 0


os.register_at_fork(after_in_child=_forget_random_bits)


def store_path(home: Path) -> Path:
    return Path(home) / DIRECTORY / FILE


class LabelError(ValueError):
    """A feedback body that is not labels; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class TooManyLabels(LabelError):
    """More labels in one body than `MAX_LABELS_PER_REQUEST`."""


@dataclass(frozen=True)
class Label:
    request_id: str
    row: int
    value: Any


def is_number(value: Any) -> bool:
    """A regressor's label: a finite number, or the text of one (CSV labels are text)."""
    if isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


NOT_A_NUMBER = "a regressor's label must be a number"


def parse_labels(body: Any, limit: int | None = None, numeric: bool = False) -> list[Label]:
    """Labels from a decoded JSON body: one object or a list of objects, each either
    `{"request_id", "row" (default 0), "label"}` or `{"request_id", "labels": [...]}` (rows 0, 1, ...).
    LabelError names the first bad field (`[i].request_id`, ...), also a label that is not a number
    when `numeric` (a regressor's); TooManyLabels when there are more than `limit`."""
    items = body if isinstance(body, list) else [body]
    labels: list[Label] = []
    for i, item in enumerate(items):
        where = f"[{i}]" if isinstance(body, list) else ""
        if not isinstance(item, dict):
            raise LabelError(where or "body", "each label must be a JSON object")
        rid = item.get("request_id")
        if not isinstance(rid, str) or not _SANE_ID.fullmatch(rid):
            raise LabelError(f"{where}.request_id".lstrip("."), "request_id must be a request id string")
        if "labels" in item:
            key, values = "labels", item["labels"]
            if not isinstance(values, list) or not values:
                raise LabelError(f"{where}.labels".lstrip("."), "labels must be a non-empty list")
            first = 0
        else:
            key, values, first = "label", [item.get("label")], item.get("row", 0)
            if "label" not in item:
                raise LabelError(f"{where}.label".lstrip("."), "each entry needs label (or labels)")
            if isinstance(first, bool) or not isinstance(first, int) or not 0 <= first < MAX_ROW:
                raise LabelError(
                    f"{where}.row".lstrip("."), f"row must be an integer from 0 to {MAX_ROW - 1}"
                )
        if limit is not None and len(labels) + len(values) > limit:  # before looking at each one
            raise TooManyLabels("body", f"at most {limit:,} labels in one request; send the rest in another")
        if any(value is None or isinstance(value, dict | list) for value in values):
            raise LabelError(f"{where}.{key}".lstrip("."), "a label must be a number or a string")
        if numeric and not all(is_number(value) for value in values):
            raise LabelError(f"{where}.{key}".lstrip("."), NOT_A_NUMBER)
        labels.extend(Label(rid, first + i, value) for i, value in enumerate(values))
    return labels


class OutcomeStore:
    """One connection to the store (a connection per thread: sqlite3 objects stay in their thread)."""

    def __init__(self, path: Path, *, shared: bool = False) -> None:
        self.path = Path(path)
        checked_private_dir(self.path.parent)  # never a symlink: the store would be written elsewhere
        os.close(open_private(self.path, os.O_RDWR | os.O_CREAT))  # 0600 before SQLite opens it
        self.db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=not shared
        )
        self.db.execute("PRAGMA journal_mode=WAL")  # several writers, readers never blocked
        self.db.execute("PRAGMA synchronous=NORMAL")
        if self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            self._create()

    def _create(self) -> None:
        """Create the tables, emptying a store of an older schema (see `SCHEMA_VERSION`)."""
        with self._write() as db:
            found = db.execute("PRAGMA user_version").fetchone()[0]
            if found == SCHEMA_VERSION:  # another process created it meanwhile
                return
            if found > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"{self.path} is of a newer modeldeck (schema {found}, this one knows {SCHEMA_VERSION})"
                )
            tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            if tables:
                log.warning(
                    "prediction store %s is of an older schema (%d): recreated empty", self.path, found
                )
            for table in tables:
                db.execute(f'DROP TABLE "{table}"')
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @classmethod
    def of(cls, home: Path) -> OutcomeStore:
        return cls(store_path(home))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> OutcomeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ------------------------------------------------------------------ writes
    def add_predictions(
        self, deployment: str, model: str, version: int, requests: list[Prediction], dropped: int = 0
    ) -> int:
        """Store the predictions of requests to one version of one deployment. A request whose
        (deployment, request_id) is already stored is not written (the first wins: a client reusing
        another's request id cannot replace its predictions) and its rows are counted as
        `predictions_collided`; returns how many. `dropped`: rows lost meanwhile (counted as
        `predictions_dropped`).

        The requests go to SQLite as one JSON document read by one statement: a statement per row
        (`executemany`) would release and take back the GIL around every row, and a worker's event
        loop, busy answering requests, would then hand it over at every switch interval: a thousand
        rows took over a second and interrupted the requests' thread as often."""
        document = orjson.dumps(requests)
        with self._write() as db:
            (last,) = db.execute("SELECT COALESCE(max(rowid), 0) FROM prediction").fetchone()
            db.execute(_INSERT_PREDICTIONS, (deployment, model, version, document))
            (written,) = db.execute(
                "SELECT COALESCE(SUM(rows), 0) FROM prediction WHERE rowid > ?", (last,)
            ).fetchone()
            collided = sum(len(predictions) for _, _, predictions, _ in requests) - written
            if collided:
                _count(db, "predictions_collided", collided)
            if dropped:
                _count(db, "predictions_dropped", dropped)
        return collided

    def add_labels(
        self,
        labels: list[Label],
        deployment: str,
        now: float | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> dict[str, int]:
        """Store `labels` for the predictions of `deployment` (last wins), in transactions of at most
        `LABELS_PER_TRANSACTION`. Returns `{"accepted", "unknown", "duplicates"}`: every label counts
        once as accepted (its prediction is stored) or unknown (not yet: kept pending); `duplicates`
        is how many of them replaced an earlier label for the same row. Beyond `max_pending` pending
        labels in the store, the oldest are dropped and counted as expired."""
        now = time.time() if now is None else now
        for label in labels:  # parse_labels checks them; this is the last line for any other caller
            if isinstance(label.row, bool) or not isinstance(label.row, int) or not 0 <= label.row < MAX_ROW:
                raise LabelError("row", f"row must be an integer from 0 to {MAX_ROW - 1}, not {label.row!r}")
        counts = {"accepted": 0, "duplicates": 0, "unknown": 0}
        for start in range(0, len(labels), LABELS_PER_TRANSACTION):
            part = labels[start : start + LABELS_PER_TRANSACTION]
            times = Counter((label.request_id, label.row) for label in part)
            with self._write() as db:  # a statement per batch, not per label (see add_predictions)
                parameters = (deployment, orjson.dumps([[*key, n] for key, n in times.items()]))
                existing, known = db.execute(_LABELS_SEEN, parameters).fetchone()
                db.execute(
                    _INSERT_LABELS,
                    (
                        deployment,
                        now,
                        orjson.dumps([[x.request_id, x.row, orjson.dumps(x.value).decode()] for x in part]),
                    ),
                )
                # a row labelled n times in the batch replaces n - 1 of them, and a stored one once more
                batch = {
                    "accepted": known or 0,
                    "duplicates": len(part) - len(times) + (existing or 0),
                    "unknown": len(part) - (known or 0),
                }
                for outcome, counted in (
                    ("accepted", "accepted"),
                    ("duplicate", "duplicates"),
                    ("unknown", "unknown"),
                ):
                    if batch[counted]:
                        _count(db, f"labels_{outcome}", batch[counted])
            counts = {key: counts[key] + batch[key] for key in counts}
        if counts["unknown"]:
            self._cap_pending(max_pending)
        return counts

    def _cap_pending(self, max_pending: int) -> int:
        """Drop the oldest pending labels beyond `max_pending` (counted as expired); how many."""
        with self._write() as db:
            pending = db.execute(f"SELECT COUNT(*) FROM label WHERE {_PENDING}").fetchone()[0]
            if pending <= max_pending:
                return 0
            gone = db.execute(
                "DELETE FROM label WHERE (deployment, request_id, row_index) IN (SELECT deployment,"
                f" request_id, row_index FROM label WHERE {_PENDING} ORDER BY t LIMIT ?)",
                (pending - max_pending,),
            ).rowcount
            _count(db, "labels_expired", gone)
            return gone

    def prune(
        self,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_age: float = DEFAULT_MAX_AGE,
        pending_seconds: float = DEFAULT_PENDING_SECONDS,
        now: float | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> dict[str, int]:
        """Delete predictions older than `max_age` or stored before the newest `max_rows` (with their
        labels), and labels still without a prediction after `pending_seconds` or beyond the newest
        `max_pending` of them (counted as expired); rows deleted. Predictions are stored within a
        flush (half a second) of being made, so "stored before" is "made before" to within that."""
        now = time.time() if now is None else now
        gone = 0
        with self._write() as db:
            (stored,) = db.execute("SELECT COALESCE(SUM(rows), 0) FROM prediction").fetchone()
            if stored > max_rows:  # the newest requests whose rows add up to at most max_rows stay
                edge = db.execute(_NEWEST_ROWS_EDGE, (max_rows,)).fetchone()
                if edge is not None:
                    gone += _delete_predictions(db, "rowid <= ?", (edge[0],))
            for stream in _streams(db):
                gone += _delete_predictions(
                    db, "deployment = ? AND version = ? AND model = ? AND t < ?", (*stream, now - max_age)
                )
            expired = db.execute(
                f"DELETE FROM label WHERE t < ? AND {_PENDING}", (now - pending_seconds,)
            ).rowcount
            if expired:
                _count(db, "labels_expired", expired)
        expired += self._cap_pending(max_pending)
        return {"predictions": gone, "labels_expired": expired}

    # ------------------------------------------------------------------ reads
    def counters(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT name, value FROM counter").fetchall())

    def size(self) -> dict[str, int]:
        return {
            "predictions": self.db.execute("SELECT COALESCE(SUM(rows), 0) FROM prediction").fetchone()[0],
            "labels": self.db.execute("SELECT COUNT(*) FROM label").fetchone()[0],
        }

    def versions(self, deployment: str, since: float) -> list[int]:
        """Versions of `deployment` with predictions since `since`."""
        query = "SELECT 1 FROM prediction WHERE deployment=? AND version=? AND model=? AND t>=? LIMIT 1"
        return sorted(
            {
                version
                for name, version, model in _streams(self.db)
                if name == deployment and self.db.execute(query, (name, version, model, since)).fetchone()
            }
        )

    def predicted(
        self, name: str, version: int, since: float, until: float = float("inf"), by: str = "deployment"
    ) -> int:
        """Predictions of version `version` of deployment (`by="model"`: model) `name` in [since, until)."""
        query = (
            "SELECT COALESCE(SUM(rows), 0) FROM prediction"
            " WHERE deployment=? AND version=? AND model=? AND t>=? AND t<?"
        )
        return sum(
            int(self.db.execute(query, (deployment, version, model, since, until)).fetchone()[0])
            for deployment, model in self._streams_of(name, version, by)
        )

    def joined(
        self, name: str, version: int, since: float, until: float = float("inf"), by: str = "deployment"
    ) -> list[tuple[Any, Any, Any, float]]:
        """(prediction, label, probabilities or None, seconds from prediction to label) of the
        labelled predictions of one version (see `predicted`) made in [since, until)."""
        query = (  # from the labels: there are never more than predictions, and mostly far fewer
            f"SELECT json_type(p.predictions, {_ROW}), json_extract(p.predictions, {_ROW}), l.label,"
            f" json_extract(p.probabilities, {_ROW}), l.t - p.t FROM label l CROSS JOIN prediction p"
            f" ON {_SAME_ROW} WHERE l.deployment=? AND p.version=? AND p.model=? AND p.t>=? AND p.t<?"
        )
        return [
            (_json_value(kind, p), orjson.loads(lab), orjson.loads(pr) if pr is not None else None, d)
            for deployment, model in self._streams_of(name, version, by)
            for kind, p, lab, pr, d in self.db.execute(query, (deployment, version, model, since, until))
        ]

    def recent_minutes(self, since: float) -> list[tuple[str, int, float]]:
        """(deployment, version, minute start) of predictions made since `since`."""
        query = (
            "SELECT DISTINCT CAST(t / 60 AS INTEGER) * 60.0 FROM prediction"
            " WHERE deployment=? AND version=? AND model=? AND t >= ?"
        )
        minutes = {
            (deployment, version, minute)
            for deployment, version, model in _streams(self.db)
            for (minute,) in self.db.execute(query, (deployment, version, model, since))
        }
        return sorted(minutes)

    def labelled_minutes(self, received_since: float) -> list[tuple[str, int, float]]:
        """(deployment, version, minute start) of predictions that got a label since `received_since`."""
        query = (
            "SELECT DISTINCT p.deployment, p.version, CAST(p.t / 60 AS INTEGER) * 60.0 FROM prediction p"
            f" JOIN label l ON {_SAME_ROW} WHERE l.t >= ?"
        )
        return list(self.db.execute(query, (received_since,)))

    def _streams_of(self, name: str, version: int, by: str) -> list[tuple[str, str]]:
        """(deployment, model) of the predictions of `version` of deployment or model `name`."""
        if by not in ("deployment", "model"):
            raise ValueError(f"predictions are kept by deployment or model, not {by!r}")
        by_deployment = by == "deployment"
        return [
            (deployment, model)
            for deployment, number, model in _streams(self.db)
            if number == version and (deployment if by_deployment else model) == name
        ]


def _streams(db: sqlite3.Connection) -> list[tuple[str, int, str]]:
    """(deployment, version, model) of every stored prediction, a few seeks of the (deployment,
    version, model, t) index per stream rather than a scan of every row: a handful of streams among a
    million rows. (A row-value seek `(deployment, version) > (?, ?)` scans the rest of the deployment.)"""
    found: list[tuple[str, int, str]] = []
    (deployment,) = db.execute("SELECT min(deployment) FROM prediction").fetchone()
    while deployment is not None:
        (version,) = db.execute(
            "SELECT min(version) FROM prediction WHERE deployment = ?", (deployment,)
        ).fetchone()
        while version is not None:
            key = (deployment, version)
            (model,) = db.execute(
                "SELECT min(model) FROM prediction WHERE deployment = ? AND version = ?", key
            ).fetchone()
            while model is not None:
                found.append((deployment, version, model))
                (model,) = db.execute(
                    "SELECT min(model) FROM prediction WHERE deployment = ? AND version = ? AND model > ?",
                    (*key, model),
                ).fetchone()
            (version,) = db.execute(
                "SELECT min(version) FROM prediction WHERE deployment = ? AND version > ?", key
            ).fetchone()
        (deployment,) = db.execute(
            "SELECT min(deployment) FROM prediction WHERE deployment > ?", (deployment,)
        ).fetchone()
    return found


def _delete_predictions(db: sqlite3.Connection, where: str, parameters: tuple[Any, ...]) -> int:
    """Delete the requests matching `where`, and their labels; how many predictions (rows)."""
    (rows,) = db.execute(
        f"SELECT COALESCE(SUM(rows), 0) FROM prediction WHERE {where}", parameters
    ).fetchone()
    db.execute(  # labels go with their predictions
        "DELETE FROM label WHERE (deployment, request_id) IN"
        f" (SELECT deployment, request_id FROM prediction WHERE {where})",
        parameters,
    )
    db.execute(f"DELETE FROM prediction WHERE {where}", parameters)
    return int(rows)


def _json_value(kind: str | None, value: Any) -> Any:
    """What `json_extract` gave, as Python: containers come as JSON text, booleans as 0 and 1."""
    if kind in ("array", "object"):
        return orjson.loads(value)
    if kind in ("true", "false"):
        return kind == "true"
    return value


#: One request's predictions as `add_predictions` takes them: request id, time, the prediction of each
#: row and each row's class probabilities (None when the request did not ask for them), as JSON values.
Prediction = tuple[str, float, list[Any], list[list[float]] | None]
#: The JSON path of a label's row in its request's arrays.
_ROW = "'$[' || l.row_index || ']'"
#: The rowid of the newest request beyond which (with it) `?` rows are stored: what goes.
_NEWEST_ROWS_EDGE = (
    "SELECT rowid FROM (SELECT rowid, SUM(rows) OVER (ORDER BY rowid DESC) AS newer FROM prediction)"
    " WHERE newer > ? LIMIT 1"
)
# The SQL takes a batch apart with json_each and json_extract (SQLite's JSON1, built in everywhere
# Python ships SQLite 3.9+), not the -> and ->> operators of 3.38+ (Ubuntu 22.04 has 3.37). A value
# kept as JSON text travels as JSON: json_extract gives an array (a request's predictions) back as its
# text, and a label, which may be a number or a string, as a JSON string of its text.
_INSERT_PREDICTIONS = (
    "INSERT OR IGNORE INTO prediction (request_id, deployment, model, version, t, rows, predictions,"
    " probabilities) SELECT json_extract(value, '$[0]'), ?, ?, ?, json_extract(value, '$[1]'),"
    " json_array_length(value, '$[2]'), json_extract(value, '$[2]'), json_extract(value, '$[3]')"
    " FROM json_each(?)"
)
#: Of a batch's distinct rows ([request id, row, times labelled] in ?2): how many already have a label,
#: and how many labels (each row's times) have their prediction stored.
_LABELS_SEEN = (
    "SELECT sum(EXISTS (SELECT 1 FROM label l WHERE l.deployment = ?1 AND l.request_id = j.request_id"
    " AND l.row_index = j.row_index)), sum(j.times * EXISTS (SELECT 1 FROM prediction p"
    " WHERE p.deployment = ?1 AND p.request_id = j.request_id AND j.row_index < p.rows))"
    " FROM (SELECT json_extract(value, '$[0]') AS request_id, json_extract(value, '$[1]') AS row_index,"
    " json_extract(value, '$[2]') AS times FROM json_each(?2)) j"
)
#: A batch's labels ([request id, row, label as JSON text] in ?3), in order: the last of a row's wins.
_INSERT_LABELS = (
    "INSERT OR REPLACE INTO label (deployment, request_id, row_index, label, t)"
    " SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), ?2"
    " FROM json_each(?3)"
)
_SAME_ROW = "l.deployment = p.deployment AND l.request_id = p.request_id AND l.row_index < p.rows"
#: A label (of table `label`) whose prediction is not stored.
_PENDING = (
    "NOT EXISTS (SELECT 1 FROM prediction p WHERE p.deployment = label.deployment"
    " AND p.request_id = label.request_id AND label.row_index < p.rows)"
)


def _json_only(queue: list[Prediction]) -> tuple[list[Prediction], int]:
    """The requests of `queue` orjson can encode, and how many predictions the others held."""
    kept = []
    for request in queue:
        with contextlib.suppress(TypeError):
            orjson.dumps(request)
            kept.append(request)
    return kept, sum(len(r[2]) for r in queue) - sum(len(r[2]) for r in kept)


def _count(db: sqlite3.Connection, name: str, by: int) -> None:
    db.execute(
        "INSERT INTO counter VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        (name, by),
    )


class PredictionRecorder:
    """A worker's bounded queue of predictions, written to the store by a background thread.

    `record` only appends to a list under a lock (the request path never touches the disk); a full
    queue drops the request's rows and counts them. The thread writes every `every` seconds."""

    def __init__(
        self,
        path: Path,
        deployment: str,
        model: str,
        version: int,
        max_rows: int = 100_000,
        every: float = 0.5,
    ) -> None:
        self.path, self.deployment, self.model, self.version = path, deployment, model, version
        self.max_rows, self.every = max_rows, every
        self._queue: list[Prediction] = []
        self._rows = 0
        self.dropped = 0
        self._unreported = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._store = OutcomeStore(path, shared=True)  # opened now: a store that cannot be opened says so
        self._flushing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="prediction-store", daemon=True)
        self._thread.start()

    def record(self, request_id: str, predictions: list[Any], probabilities: list[Any] | None = None) -> None:
        """Queue one request's predictions (and class probabilities, if it asked for them)."""
        n = len(predictions)
        with self._lock:
            if self._rows + n > self.max_rows:
                self.dropped += n
                self._unreported += n
                return
            self._queue.append((request_id, time.time(), predictions, probabilities))
            self._rows += n

    def flush(self) -> None:
        """Write what is queued now (the caller's thread); used before labels are stored and at exit."""
        with self._flushing:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            queue, self._queue, rows, self._rows = self._queue, [], self._rows, 0
            dropped, self._unreported = self._unreported, 0
        if not queue and not dropped:
            return
        for attempt in (1, 2):  # a write waits BUSY_TIMEOUT for the lock, then tries once more
            try:
                self._store.add_predictions(self.deployment, self.model, self.version, queue, dropped)
                return
            except TypeError as exc:  # orjson refuses the batch for one value (a Decimal, a huge int)
                queue, lost = _json_only(queue)
                log.warning("%d predictions are not JSON values (%s): dropped, the others stored", lost, exc)
                with self._lock:
                    self.dropped += lost
                rows, dropped = rows - lost, dropped + lost
                continue  # raised before any SQL: the write is tried again whole
            except sqlite3.OperationalError as exc:
                if attempt == 1 and "locked" in str(exc):
                    log.warning("prediction store busy (%s): retrying %d predictions", exc, rows)
                    continue
                error: Exception = exc
            except (sqlite3.Error, OSError) as exc:
                error = exc
            break
        else:
            error = TypeError("the batch is still not JSON")  # orjson refused what it took one by one
        with self._lock:
            self.dropped += rows
            self._unreported += rows + dropped
        log.warning("could not store %d predictions (dropped): %s", rows, error)

    def add_labels(self, labels: list[Label]) -> dict[str, int]:
        """Store labels (see `OutcomeStore.add_labels`) after writing the queued predictions, so a
        label sent right after its prediction finds it."""
        with self._flushing:
            self._flush()
            return self._store.add_labels(labels, self.deployment)

    def close(self) -> None:
        """Stop the thread and write what is left."""
        self._stop = True
        self._wake.set()
        self._thread.join(10)
        self.flush()
        self._store.close()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.every)
            if self._stop:
                return
            try:
                self.flush()
            except Exception:  # the thread lives on: the next pass may succeed
                log.exception("prediction store writer failed; it carries on")


def open_recorder(
    home: Path, deployment: str, model: str, version: int
) -> tuple[PredictionRecorder | None, str | None]:
    """A worker's recorder for the store of `home`, or (None, why) when the store cannot be opened
    (a full disk, a damaged or unsafe file; logged): the worker serves on without it."""
    try:
        return PredictionRecorder(store_path(home), deployment, model, version), None
    except (sqlite3.Error, OSError, UnsafePath) as exc:
        log.warning("no prediction store (predictions are not kept for labels): %s", exc)
        return None, str(exc) or type(exc).__name__
