"""The Prometheus rules generated for deployments' objectives (registry.monitoring.prometheus_rules):
their shape, `promtool check rules`, and `promtool test rules` cases that show each kind's alert
firing only while both its long and its short window burn.

Needs `promtool` on PATH (`.ci/prometheus.sh` installs it); skipped without it unless
MODELDECK_REQUIRE_PROMETHEUS=1 (CI), where its absence fails.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from helpers import need_prometheus, promtool

from registry.alerts import ObjectiveSpec, default_objective
from registry.monitoring.prometheus_rules import objective_rules

#: A deployment name that needs escaping in PromQL (quote, backslash) and in Go templates ("{{").
WEIRD = 'fraud "v2" \\ {{ x }}'
FAST = {"long": 600.0, "short": 60.0, "burn": 2.0, "severity": "page"}
OBJECTIVES = {
    "iris": [
        default_objective("iris", "availability"),
        replace(default_objective("iris", "latency"), enabled=False),
        default_objective("iris", "drift"),
    ],
    WEIRD: [
        ObjectiveSpec(WEIRD, "availability", 0.99, None, [FAST]),
        ObjectiveSpec(WEIRD, "latency", 0.9, 0.3, [{**FAST, "short": 90.0}]),
        ObjectiveSpec(
            WEIRD, "drift", 0.9, 1.0, [{"long": 3600.0, "short": 300.0, "burn": 5.0, "severity": "x"}]
        ),
    ],
    "quiet": [replace(default_objective("quiet", "availability"), enabled=False)],
}


def _rules() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load(objective_rules(OBJECTIVES))
    return parsed


def _rule(deployment: str, objective: str) -> dict[str, Any]:
    group = next(g for g in _rules()["groups"] if g["name"] == f"modeldeck.objectives.{deployment}")
    rule: dict[str, Any] = next(r for r in group["rules"] if r["labels"]["objective"] == objective)
    return rule


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    """An input series of a `promtool test rules` case (label values escaped as PromQL strings)."""
    inner = ",".join(f"{k}={json.dumps(v)}" for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _run_case(tmp_path: Path, series: list[dict[str, str]], checks: list[dict[str, Any]]) -> None:
    """Write the rules and one `promtool test rules` case (15 s apart, rules evaluated as often)."""
    need_prometheus("promtool")
    (tmp_path / "rules.yml").write_text(objective_rules(OBJECTIVES))
    case = {"interval": "15s", "input_series": series, "alert_rule_test": checks}
    test_file = tmp_path / "test.yml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "15s", "tests": [case]})
    )
    tested = promtool("test", "rules", str(test_file), cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _alert(deployment: str, objective: str, summary: str) -> dict[str, Any]:
    """The alert `promtool` should see firing for the rule of `deployment`'s `objective` (one window)."""
    rule = _rule(deployment, objective)
    labels = {"severity": rule["labels"]["severity"], "deployment": deployment, "objective": objective}
    labels["window"] = rule["labels"]["window"]
    return {"exp_labels": labels, "exp_annotations": {**rule["annotations"], "summary": summary}}


def test_one_group_per_deployment_with_a_rule_per_window_of_each_enabled_objective() -> None:
    groups = _rules()["groups"]
    assert [g["name"] for g in groups] == ["modeldeck.objectives.iris", f"modeldeck.objectives.{WEIRD}"]
    iris = [(r["alert"], r["labels"]["severity"], r["labels"]["window"]) for r in groups[0]["rules"]]
    assert iris == [
        ("ModeldeckAvailability", "critical", "1h/5m"),
        ("ModeldeckAvailability", "warning", "6h/30m"),
        ("ModeldeckDrift", "warning", "30m/5m"),
    ]  # the disabled latency objective has no rule, nor the deployment with none enabled a group
    for rule in groups[0]["rules"]:
        assert rule["labels"]["deployment"] == "iris"
        assert 'deployment="iris"' in rule["expr"] and "deployment!=" not in rule["expr"]
    availability = groups[0]["rules"][0]
    assert "[1h]" in availability["expr"] and "[5m]" in availability["expr"]
    assert "/ (1 - 0.995) >= 14.4" in availability["expr"] and 'code=~"5.."' in availability["expr"]
    assert (
        "14.4x" in availability["annotations"]["summary"]
        and "availability" in availability["annotations"]["summary"]
    )
    assert ">= bool 2)[30m:30s]" in groups[0]["rules"][2]["expr"]

    latency = _rule(WEIRD, "latency")
    assert r'deployment="fraud \"v2\" \\ {{ x }}", le="0.5"}[90s]' in latency["expr"]
    assert 'le="0.25"' not in latency["expr"]
    assert (
        'bucket le="0.5" (500 ms): the threshold 300 ms is no bucket bound'
        in latency["annotations"]["description"]
    )
    assert latency["labels"]["deployment"] == 'fraud "v2" \\ {{ "{{" }} x }}'  # renders as the name
    assert "bucket" not in _rule("iris", "availability")["annotations"]["description"]
    assert ">= bool 1)[1h:30s]" in _rule(WEIRD, "drift")["expr"]  # warn: level 1 and above is bad


def test_the_generated_rules_pass_promtool_check(tmp_path: Path) -> None:
    need_prometheus("promtool")
    path = tmp_path / "rules.yml"
    path.write_text(objective_rules(OBJECTIVES))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout


def test_availability_fires_only_while_both_windows_burn(tmp_path: Path) -> None:
    """WEIRD (99%, 10m/1m at 2x): 5% of requests fail from 10m to 20m. Its 1m window burns at once, the
    10m one (needs 2%) from about 14m; it stops at 20m with the 1m window. iris, with 2% failing all the
    time, stays under its defaults (7.2% and 3%); a model server's own series (no deployment) is ignored."""
    request = "modeldeck_requests_total"
    series = [
        _series(request, {"deployment": WEIRD, "model": "fraud", "version": "1", "code": "200"}, "0+50x160"),
        _series(request, {"deployment": WEIRD, "model": "fraud", "version": "2", "code": "200"}, "0+45x160"),
        _series(
            request,
            {"deployment": WEIRD, "model": "fraud", "version": "2", "code": "500"},
            "0x40 5+5x39 200x80",
        ),
        _series(request, {"model": "fraud", "version": "2", "code": "500"}, "0+1000x160"),
        _series(request, {"deployment": "iris", "model": "iris", "version": "3", "code": "200"}, "0+98x160"),
        _series(request, {"deployment": "iris", "model": "iris", "version": "3", "code": "503"}, "0+2x160"),
    ]
    firing = _alert(
        WEIRD,
        "availability",
        f"{WEIRD}: the availability objective's error budget burns at least 2x too fast over 10m and 1m",
    )
    checks = [
        {"eval_time": t, "alertname": "ModeldeckAvailability", "exp_alerts": [firing] if fires else []}
        for t, fires in (
            ("9m", False),
            ("12m", False),
            ("16m", True),
            ("20m", True),
            ("21m", False),
            ("30m", False),
        )
    ]
    _run_case(tmp_path, series, checks)


def test_latency_counts_the_bucket_bound_at_or_above_the_threshold(tmp_path: Path) -> None:
    """WEIRD (90% within 300 ms, 10m/90s at 2x): counted at le="0.5". Half the requests take over 500 ms
    from 10m to 20m; 90% take over 250 ms all the time (which would fire at once were le="0.25" used)."""
    base = {"deployment": WEIRD, "model": "fraud", "version": "2"}
    bucket = "modeldeck_request_duration_seconds_bucket"
    series = [
        _series(bucket, {**base, "le": "0.25"}, "0+10x160"),
        _series(bucket, {**base, "le": "0.5"}, "0+100x40 4050+50x39 6100+100x79"),
        _series(bucket, {**base, "le": "+Inf"}, "0+100x160"),
        _series("modeldeck_request_duration_seconds_count", base, "0+100x160"),
    ]
    firing = _alert(
        WEIRD,
        "latency",
        f"{WEIRD}: the latency objective's error budget burns at least 2x too fast over 10m and 90s",
    )
    checks = [
        {"eval_time": t, "alertname": "ModeldeckLatency", "exp_alerts": [firing] if fires else []}
        for t, fires in (("9m", False), ("12m", False), ("16m", True), ("20m", True), ("22m", False))
    ]
    _run_case(tmp_path, series, checks)


def test_default_drift_fires_when_drifted_half_of_both_windows(tmp_path: Path) -> None:
    """iris' default drift objective (below drift half the time, 30m/5m at 1x): drifted from 21m to 49m,
    then at warn (not bad for this objective). The 5m window burns at once, the 30m one from about 36m;
    at 56m the 5m window has recovered though the 30m one still burns."""
    level = {"deployment": "iris", "model": "iris", "version": "3"}
    series = [_series("modeldeck_drift_level", level, "0x84 2x115 1x80")]
    firing = _alert(
        "iris", "drift", "iris: the drift objective's error budget burns at least 1x too fast over 30m and 5m"
    )
    checks = [
        {"eval_time": t, "alertname": "ModeldeckDrift", "exp_alerts": [firing] if fires else []}
        for t, fires in (
            ("20m", False),
            ("24m", False),
            ("33m", False),
            ("40m", True),
            ("49m", True),
            ("56m", False),
        )
    ]
    _run_case(tmp_path, series, checks)
