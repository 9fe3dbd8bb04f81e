"""Prometheus alerting rules for deployments' objectives: the SRE workbook's multi-window, multi-burn-rate
alerts over the supervisor exporter's series, meaning what `registry.monitoring.burn` judges.

Each window of an objective is one rule: it fires while the bad ratio over the long window and over
the short one, divided by the error budget (1 - target), are both at least `burn`. Two differences
from the supervisor's own alerts: Prometheus ends an alert as soon as either window stops burning
(the supervisor keeps it firing while the short one burns), and latency is counted at the smallest
histogram bound at or above the threshold (the supervisor interpolates within that bucket).
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from prometheus_client.utils import floatToGoString

from registry.alerts import (
    ALERT_NAMES,
    AVAILABILITY,
    DRIFT,
    LATENCY,
    PERFORMANCE,
    ObjectiveSpec,
    format_duration,
)
from registry.monitoring.metrics import LATENCY_BUCKETS


def objective_rules(objectives: dict[str, list[ObjectiveSpec]]) -> str:
    """A Prometheus rule file (YAML): one group per deployment, `modeldeck.objectives.<deployment>`,
    with an alert per window of each enabled objective."""
    groups = []
    for deployment, specs in objectives.items():
        rules = [_rule(deployment, spec, w) for spec in specs if spec.enabled for w in spec.windows]
        if rules:
            groups.append({"name": f"modeldeck.objectives.{deployment}", "rules": rules})
    return yaml.dump({"groups": groups}, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)


def _rule(deployment: str, spec: ObjectiveSpec, window: dict[str, Any]) -> dict[str, Any]:
    long, short, burn = float(window["long"]), float(window["short"]), float(window["burn"])
    step = _duration(max(1, min(60, int(short // 10))))  # drift's subquery: a tenth of the short window
    budget = f"(1 - {spec.target!r})"
    breached = [
        f"{_bad_ratio(deployment, spec, _duration(w), step)} / {budget} >= {burn!r}" for w in (long, short)
    ]
    span = f"{format_duration(long)}/{format_duration(short)}"
    note = ""
    if spec.kind == LATENCY:
        threshold, bound = spec.threshold or 0.0, _bound(spec.threshold or 0.0)
        if not _same(bound, threshold):
            note = (
                f' Requests are counted against the histogram bucket le="{floatToGoString(bound)}" '
                f"({bound * 1000:g} ms): the threshold {threshold * 1000:g} ms is no bucket bound."
            )
    return {
        "alert": ALERT_NAMES[spec.kind],
        "expr": f"(\n  {breached[0]}\n)\nand\n(\n  {breached[1]}\n)\n",
        "labels": {
            key: _literal(value)
            for key, value in (
                ("severity", str(window["severity"])),
                ("deployment", deployment),
                ("objective", spec.kind),
                ("window", span),
            )
        },
        "annotations": {
            "summary": _literal(
                f"{deployment}: the {spec.kind} objective's error budget burns at least {burn:g}x too fast "
                f"over {format_duration(long)} and {format_duration(short)}"
            ),
            "description": _literal(
                f"Objective {spec.describe()}. Alerts at a burn rate of {burn:g}x over both "
                f"{format_duration(long)} and {format_duration(short)} ({window['severity']}).{note}"
            ),
        },
    }


def _bad_ratio(deployment: str, spec: ObjectiveSpec, window: str, step: str) -> str:
    """PromQL for the share of `spec`'s events that were bad over `window`."""
    name = _string(deployment)

    def rate(metric: str, extra: str = "") -> str:
        return f"sum by (deployment) (rate(modeldeck_{metric}{{deployment={name}{extra}}}[{window}]))"

    if spec.kind == AVAILABILITY:
        total, errors = rate("requests_total"), rate("requests_total", ', code=~"5.."')
        return f"(({errors} or 0 * {total}) / {total})"
    if spec.kind == LATENCY:
        le = floatToGoString(_bound(spec.threshold or 0.0))
        fast = rate("request_duration_seconds_bucket", f', le="{le}"')
        return f"(1 - {fast} / {rate('request_duration_seconds_count')})"
    if spec.kind == DRIFT:
        level = 1 if (spec.threshold or 2.0) < 2.0 else 2  # as burn.bad_events: below 2 means warn
        state = f"max by (deployment) (modeldeck_drift_level{{deployment={name}}}) >= bool {level}"
        return f"avg_over_time(({state})[{window}:{step}])"
    if spec.kind == PERFORMANCE:  # realised accuracy where labels gave one, else the estimate
        accuracy = " or ".join(
            f"max by (deployment) (modeldeck_{source}_accuracy{{deployment={name}}})"
            for source in ("realised", "estimated")
        )
        return f"avg_over_time((({accuracy}) < bool {spec.threshold!r})[{window}:{step}])"
    raise ValueError(f"unknown objective kind {spec.kind!r}")


def _bound(threshold: float) -> float:
    """The smallest latency bucket bound at or above `threshold` (else the largest, which counts the
    +Inf bucket as slow, as the supervisor does)."""
    return next((b for b in LATENCY_BUCKETS if b >= threshold or _same(b, threshold)), LATENCY_BUCKETS[-1])


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def _duration(seconds: float) -> str:
    """A PromQL duration: "1h", "5m", "90s", "1500ms"."""
    ms = max(1, round(seconds * 1000))
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _string(value: str) -> str:
    """A PromQL string literal (its escapes are JSON's)."""
    return json.dumps(value, ensure_ascii=False)


def _literal(text: str) -> str:
    """`text` as a Go template (Prometheus expands alert labels and annotations) that renders as itself."""
    return text.replace("{{", '{{ "{{" }}')


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the expressions) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _represent_str)
