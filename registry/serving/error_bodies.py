"""Error bodies of a model server, each in the shape of the protocol its route belongs to.

Open Inference Protocol routes (`/v2` and below) answer the specification's `{"error": "<message>"}`,
which Triton's and KServe's clients print as it is. Every other route (MLflow's `/invocations`,
`/ping`, `/health` and `/version`, the health and metrics routes, unknown paths) answers MLflow's
`{"error_code": "<MLflow code>", "message": "<message>"}`, which MLflow's clients raise as an
`MlflowException` reading `ERROR_CODE: message`. Both shapes carry the same detail beside it: `code`
(modeldeck's own, e.g. `schema_mismatch`), `field`, and where they apply `row` and `details`. The
message names the field itself, so a client that shows only the message still says what to fix.
"""

from __future__ import annotations

from typing import Any

from registry.signature import InputError

OIP_PREFIX = "/v2"

#: The MLflow error code of each status a model server answers: MLflow's own code-to-status mapping
#: (`mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS`) read backwards, with its choice for the statuses it
#: has no code of its own for (415, 408, 405 and 413 are the client's mistake: BAD_REQUEST).
MLFLOW_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    422: "INVALID_PARAMETER_VALUE",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def is_oip(path: str) -> bool:
    """True for the Open Inference Protocol's routes (`/v2` and below)."""
    return path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/")


def mlflow_code(status: int) -> str:
    """MLflow's error code for an HTTP `status`."""
    return MLFLOW_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")


def error_body(
    path: str, http_status: int, message: str, code: str, field: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The body of an error answered on `path`: the OIP shape on `/v2` routes, MLflow's elsewhere.

    `code` and `field` are always present (`field` may be null); `extra` keys (`row`, `details`, ...)
    ride along as given."""
    detail = {"code": code, "field": field, **extra}
    if is_oip(path):
        return {"error": message, **detail}
    return {"error_code": mlflow_code(http_status), "message": message, **detail}


def input_error_body(path: str, error: InputError) -> dict[str, Any]:
    """`error_body` of a refused request."""
    extra: dict[str, Any] = {}
    if error.row is not None:
        extra["row"] = error.row
    if error.details:
        extra["details"] = error.details
    return error_body(path, error.status, error.message, error.code, error.field, **extra)
