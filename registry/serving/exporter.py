"""Prometheus exposition of everything the supervisor pulls, and a `file_sd` targets file.

Model servers answer `/metrics` themselves, but behind one port with several workers each scrape
reaches one worker. The supervisor's exporter sums every worker of a deployment and keeps counting
across worker restarts (counters never go back), adds resources, drift (per feature, and the multivariate
signal) and worker restarts, and is the one source of truth Prometheus should scrape:
`$MODELDECK_HOME/prometheus/targets.json` lists it alone.
The servers' own series carry no `deployment` label, so nothing that selects on `deployment` (the
shipped dashboard and rules) can count a request twice even where someone scrapes a server as well.

Prometheus takes a series' first sample as its start, so what a series counts before it is first
scraped never shows in rate()/increase(). A version's request series for `INITIAL_CODES` and its
histogram therefore exist at 0 from when it starts loading (the scraper keeps totals for every
worker's version), and any series is shown at 0 the first time it is exposed and with its count from
the next exposition on: one scrape late, never lost (for one Prometheus; a second one scraping the same
exporter may see the count first). Series restored after a supervisor restart were shown before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from registry.files import private_dirs, write_atomic
from registry.monitoring.metrics import LATENCY_BUCKETS
from registry.monitoring.timeseries import DeploymentSeries

if TYPE_CHECKING:
    from registry.serving.supervisor import Supervisor

#: Codes whose request series exist (at 0) from the moment a version starts loading, so the first
#: requests of each are counted by rate()/increase() (Prometheus misses a series' first value).
INITIAL_CODES = ("200", "400", "404", "413", "415", "422", "500", "503")
_DRIFT_LEVEL = {"ok": 0.0, "warn": 1.0, "drift": 2.0}
#: Per-feature drift gauges (the predictions are the feature "prediction"): key of the feature's
#: figures, metric name, help.
_FEATURE_GAUGES = (
    ("psi", "modeldeck_drift_psi", "PSI of a feature's live window."),
    ("level", "modeldeck_drift_feature_level", "A feature's drift verdict: 0 ok, 1 warn, 2 drift."),
    ("p_value", "modeldeck_drift_p_value", "Raw p-value of a feature's distribution test (KS or chi2)."),
    ("p_adjusted", "modeldeck_drift_p_adjusted", "Its Holm-adjusted p-value (over all the window's tests)."),
    (
        "effect",
        "modeldeck_drift_effect",
        "Effect size: Wasserstein-1 over the robust scale (numeric), total variation (categorical).",
    ),
    ("missing_share", "modeldeck_drift_missing_share", "Share of a feature's values missing in the window."),
    (
        "missing_p_adjusted",
        "modeldeck_drift_missing_p_adjusted",
        "Holm-adjusted p-value of the test of the missing share against the reference's.",
    ),
)


class SupervisorCollector:
    """A prometheus_client collector over the supervisor's series (bounded labels only)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        scraper = self.supervisor.scraper
        base = ["deployment", "model", "version"]
        requests = CounterMetricFamily(
            "modeldeck_requests", "Prediction requests by HTTP status code.", labels=[*base, "code"]
        )
        latency = HistogramMetricFamily(
            "modeldeck_request_duration_seconds", "Time to answer a prediction request.", labels=base
        )
        gauges = {
            key: GaugeMetricFamily(name, text, labels=base)
            for key, name, text in (
                ("in_flight", "modeldeck_requests_in_flight", "Prediction requests being answered now."),
                ("cpu", "modeldeck_workers_cpu_percent", "CPU of the deployment's workers (% of one core)."),
                (
                    "rss",
                    "modeldeck_workers_resident_memory_bytes",
                    "Resident memory of the deployment's workers.",
                ),
                ("threads", "modeldeck_workers_threads", "Threads of the deployment's workers."),
                ("fds", "modeldeck_workers_open_fds", "Open file descriptors of the deployment's workers."),
                ("workers", "modeldeck_workers", "Worker processes serving the deployment."),
                ("stale", "modeldeck_workers_stale", "Workers that did not answer the last metrics pull."),
            )
        }
        per_feature = {
            key: GaugeMetricFamily(name, text, labels=[*base, "feature"])
            for key, name, text in _FEATURE_GAUGES
        }
        share = GaugeMetricFamily(
            "modeldeck_drift_share", "Share of drifted features in the live window.", labels=base
        )
        level = GaugeMetricFamily(
            "modeldeck_drift_level", "Drift verdict: 0 ok, 1 warn, 2 drift.", labels=base
        )
        for name, series in scraper.series.items():
            runtime = self.supervisor.runtimes.get(name)
            model = runtime.spec.model if runtime else ""
            for version, totals in series.totals.items():
                labels = [name, model, str(version)]
                codes = {**dict.fromkeys(INITIAL_CODES, 0.0), **totals.requests}
                for code, count in sorted(codes.items()):
                    requests.add_metric(
                        [*labels, code], _first_at_zero(scraper.exposed, (name, version, code), count)
                    )
                shown = (name, version, "") in scraper.exposed
                scraper.exposed.add((name, version, ""))
                cumulative, running = [], 0.0
                for bound, count in zip(
                    [*map(str, LATENCY_BUCKETS), "+Inf"], totals.latency_buckets, strict=True
                ):
                    running += count if shown else 0.0
                    cumulative.append((bound, running))
                latency.add_metric(labels, cumulative, totals.latency_sum if shown else 0.0)
            live = series.points[-1] if series.points else None
            if live is not None:
                labels = [name, model, str(live["version"])]
                for key, family in gauges.items():
                    if live.get(key) is not None:
                        family.add_metric(labels, live[key])
            drift = scraper.drift.get(name)
            if drift and drift["status"] in _DRIFT_LEVEL:
                labels = [name, model, str(drift["version"])]
                share.add_metric(labels, drift["drifted_share"])
                level.add_metric(labels, _DRIFT_LEVEL[drift["status"]])
                signals = [*drift["features"], *([drift["prediction"]] if drift.get("prediction") else [])]
                for feature in signals:
                    values = {**feature, "level": _DRIFT_LEVEL.get(feature["status"])}
                    for key, family in per_feature.items():
                        if values.get(key) is not None:
                            family.add_metric([*labels, feature["name"]], values[key])
        yield requests
        yield latency
        yield from gauges.values()
        yield from (*per_feature.values(), share, level)
        yield from _multivariate_drift(self.supervisor)
        yield from _estimated(self.supervisor, scraper.estimates.figures)
        yield from _realised(self.supervisor)
        yield _restarts(self.supervisor)
        yield from _monitoring_health(scraper)
        host = scraper.host
        if host:
            yield GaugeMetricFamily(
                "modeldeck_host_cpu_percent", "Host CPU use (all cores).", value=host["cpu"]
            )
            yield GaugeMetricFamily(
                "modeldeck_host_memory_used_bytes", "Host memory in use.", value=host["memory_used"]
            )
            yield GaugeMetricFamily(
                "modeldeck_host_load1", "Host load average over 1 minute.", value=host["load"][0]
            )


def _first_at_zero(exposed: set[tuple[str, int, str]], key: tuple[str, int, str], count: float) -> float:
    """`count`, or 0 the first time the series `key` is shown (then it is marked shown)."""
    if key in exposed:
        return count
    exposed.add(key)
    return 0.0


def exposed_keys(name: str, series: DeploymentSeries) -> Iterator[tuple[str, int, str]]:
    """The keys of every request series of `series` (restored ones were shown before a restart)."""
    for version, totals in series.totals.items():
        yield (name, version, "")
        for code in {*INITIAL_CODES, *totals.requests}:
            yield (name, version, code)


def _multivariate_drift(supervisor: Supervisor) -> Iterator[Metric]:
    """The live window's multivariate drift signal (registry.monitoring.multivariate), per deployment
    whose report has one: error ratio, its p-value and its own verdict."""
    base = ["deployment", "model", "version"]
    ratio = GaugeMetricFamily(
        "modeldeck_drift_multivariate_error_ratio",
        "Mean PCA reconstruction error of the live window over the reference's (1 = as in the reference).",
        labels=base,
    )
    p_value = GaugeMetricFamily(
        "modeldeck_drift_multivariate_p_value",
        "One-sided p-value that the live window's reconstruction errors exceed the reference's.",
        labels=base,
    )
    level = GaugeMetricFamily(
        "modeldeck_drift_multivariate_level",
        "Multivariate drift verdict: 0 ok, 1 warn, 2 drift.",
        labels=base,
    )
    for name, drift in supervisor.scraper.drift.items():
        signal = (drift or {}).get("multivariate") or {}
        if signal.get("status") not in _DRIFT_LEVEL:
            continue
        runtime = supervisor.runtimes.get(name)
        labels = [name, runtime.spec.model if runtime else "", str(drift["version"])]
        ratio.add_metric(labels, signal["error_ratio"])
        p_value.add_metric(labels, signal["p_value"])
        level.add_metric(labels, _DRIFT_LEVEL[signal["status"]])
    yield from (ratio, p_value, level)


def _estimated(supervisor: Supervisor, figures: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    """Estimated accuracy and F1 of each deployment's live window (no series without an estimate)."""
    labels = ["deployment", "model", "version"]
    families = {
        metric: GaugeMetricFamily(
            f"modeldeck_estimated_{metric}",
            f"Estimated {title} of the live window, from the model's calibrated confidence (CBPE).",
            labels=labels,
        )
        for metric, title in (("accuracy", "accuracy"), ("f1", "F1"))
    }
    for name, estimated in sorted(figures.items()):
        runtime = supervisor.runtimes.get(name)
        values = [name, runtime.spec.model if runtime else "", str(estimated["version"])]
        for metric, family in families.items():
            if estimated.get(metric) is not None:
                family.add_metric(values, estimated[metric])
    yield from families.values()


_REALISED = {
    "accuracy": "Realised accuracy: predictions of the last day that got a label, compared with it.",
    "f1": "Realised F1 (two classes: of the second; else macro) over the last day's labelled predictions.",
    "log_loss": "Realised log loss (only where class probabilities were stored).",
    "mae": "Realised mean absolute error over the labelled predictions of the last day.",
    "rmse": "Realised root mean squared error over the labelled predictions of the last day.",
}


def _realised(supervisor: Supervisor) -> Iterator[Metric]:
    """Realised performance per deployment and version, label coverage and delay, labels received."""
    base = ["deployment", "model", "version"]
    families = {
        key: GaugeMetricFamily(f"modeldeck_realised_{key}", text, labels=base)
        for key, text in _REALISED.items()
    }
    coverage = GaugeMetricFamily(
        "modeldeck_label_coverage_ratio", "Share of the last day's predictions that got a label.", labels=base
    )
    delay = GaugeMetricFamily(
        "modeldeck_label_delay_seconds", "Median seconds from a prediction to its label.", labels=base
    )
    scraper = supervisor.scraper
    for name, figures in scraper.realised.items():
        runtime = supervisor.runtimes.get(name)
        model = runtime.spec.model if runtime else ""
        for version, each in (figures.get("versions") or {}).items():
            labels = [name, model, version]
            coverage.add_metric(labels, each["coverage"])
            if each.get("delay") is not None:
                delay.add_metric(labels, each["delay"])
            for key, family in families.items():
                if each.get(key) is not None:
                    family.add_metric(labels, each[key])
    yield from families.values()
    yield coverage
    yield delay
    received = CounterMetricFamily(
        "modeldeck_feedback_labels",
        "Labels received, each once: accepted (its prediction was stored) or unknown (kept pending);"
        " expired: pending ones dropped later.",
        labels=["outcome"],
    )
    counters = scraper.outcomes
    for outcome in ("accepted", "unknown", "expired"):
        received.add_metric([outcome], float(counters.get(f"labels_{outcome}", 0)))
    yield received
    yield CounterMetricFamily(
        "modeldeck_feedback_label_duplicates",
        "Labels received (accepted or unknown) that replaced an earlier label for the same row.",
        value=float(counters.get("labels_duplicate", 0)),
    )
    yield CounterMetricFamily(
        "modeldeck_predictions_unstored",
        "Predictions not kept for labels (a worker's queue was full or the store refused them).",
        value=float(counters.get("predictions_dropped", 0)),
    )
    yield CounterMetricFamily(
        "modeldeck_prediction_id_collisions",
        "Predictions not kept because their deployment already had one under that request id and row.",
        value=float(counters.get("predictions_collided", 0)),
    )


def _restarts(supervisor: Supervisor) -> Metric:
    """Workers restarted after a crash (or after not answering), per deployment; from 0 when the
    supervisor starts, which Prometheus' rate()/increase() read as a counter reset."""
    family = CounterMetricFamily(
        "modeldeck_worker_restarts",
        "Workers restarted after they crashed or stopped answering.",
        labels=["deployment", "model"],
    )
    for name, runtime in supervisor.runtimes.items():
        family.add_metric([name, runtime.spec.model], runtime.restarts)
    return family


def _monitoring_health(scraper: Any) -> Iterator[Metric]:
    """Whether monitoring itself keeps up: unreadable pulls, dropped sample rows, rollups set aside."""
    errors = CounterMetricFamily(
        "modeldeck_monitoring_pull_errors",
        "Worker metrics replies that could not be read.",
        labels=["deployment"],
    )
    dropped = CounterMetricFamily(
        "modeldeck_monitoring_sample_dropped",
        "Sampled input rows dropped before the supervisor pulled them.",
        labels=["deployment"],
    )
    known = {*scraper.supervisor.runtimes, *scraper.series, *scraper.pull_errors, *scraper.sample_dropped}
    for name in sorted(known):  # at 0 from the start, so the first error is an increase
        errors.add_metric([name], scraper.pull_errors.get(name, 0))
        dropped.add_metric([name], scraper.sample_dropped.get(name, 0))
    stats = scraper.rollups.stats()
    yield errors
    yield dropped
    yield CounterMetricFamily(
        "modeldeck_rollups_stored", "Metric rollup windows written to the registry DB.", value=stats["stored"]
    )
    yield CounterMetricFamily(
        "modeldeck_rollups_set_aside",
        "Metric rollup windows the registry DB refused for good (kept aside, see the supervisor log).",
        value=stats["set_aside"],
    )


def exposition(supervisor: Supervisor) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SupervisorCollector(supervisor))
    return generate_latest(registry)


def target_groups(exporter: str | None, hosts: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """Prometheus targets (the `file_sd` and `http_sd` format): the supervisor's exporter, or on a shared
    registry every host's (`hosts`: name and exporter address), each labelled with its `host`.

    The deployments' servers are left out on purpose: behind a port with several workers a scrape
    reaches one worker at random, the exporter already has the sums, and listing both is what made
    every request count twice. `source` stays for scrape configs that keep `source="supervisor"`."""
    labels = {"job": "modeldeck", "source": "supervisor"}
    if hosts is not None:
        return [{"targets": [address], "labels": {**labels, "host": name}} for name, address in hosts]
    return [{"targets": [exporter], "labels": labels}] if exporter else []


def write_targets(path: Path, groups: list[dict[str, Any]]) -> None:
    """Write `target_groups` to `path` for Prometheus' `file_sd` (atomically: it reloads on change)."""
    write_atomic(private_dirs(path.parent) / path.name, json.dumps(groups, indent=1).encode())
