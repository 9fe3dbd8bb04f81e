"""The analysis of a canary or shadow: the candidate version against the serving one, side by side.

Each check compares what the two versions did over the same span (the current step of a canary, or
the whole of a shadow) and says `pass`, `fail` or `wait` (not enough evidence yet), with both figures:

- **errors**: the share of 5xx answers; fails as soon as the candidate's exceeds the serving version's
  by more than `max_error_increase` (1 percentage point by default) over at least two failures, and
  passes only once the step's answers rule that out (the one-sided 95% Wilson upper bound of the
  candidate's rate is within it: with no failure, about 270 answers for 1 point);
- **latency**: p99 from the two latency histograms; fails when the candidate's is more than
  `max_latency_ratio` times the serving version's *and* more than `latency_slack` slower (both must
  hold, so a fast model's 1 ms wobble is not a regression), over at least `MIN_SLOW` answers slower
  than that (the p99 of 50 answers is their slowest: one stalled answer is not a regression). At a
  step of 100% the serving version answers nothing, so the candidate is judged against what the
  serving version answered in the previous step (or before the rollout);
- **agreement**: the share of the same recent inputs (rows the candidate was sent) on which both
  versions predict the same class, or, for a regressor, values within 1% of the serving version's spread;
  fails under `min_agreement`, once `min_requests` rows were compared;
- **drift**: the candidate's recent inputs judged against the candidate's reference and against the
  serving version's (the same rows: only the training data differs); fails when the live inputs are
  `drift` for the candidate's reference but not for the serving version's;
- **performance**: realised accuracy (classifiers) or mean absolute error (regressors) of each version's
  predictions labelled since the rollout began, once both have `min_labelled`; fails when the candidate
  is worse by more than `max_accuracy_drop` (or its MAE more than that share higher).

A check without its figures yet (no drift computed, no labels) waits and does not hold a step back,
except errors and latency, which need `min_requests` answers from the candidate in the step. This is
what Flagger's analysis does with its metric templates, on the figures modeldeck already measures.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

from registry.monitoring.drift import DRIFT, OK, WARN
from registry.monitoring.metrics import LATENCY_BUCKETS
from registry.monitoring.timeseries import quantile

PASS, FAIL, WAIT = "pass", "fail", "wait"
#: The fewest answers of the candidate over the latency limit that fail the latency check.
MIN_SLOW = 3
DEFAULT_STEPS = (5.0, 25.0, 50.0, 100.0)
_DRIFT_RANK = {OK: 0, WARN: 1, DRIFT: 2}


@dataclass
class AnalysisSettings:
    """How a canary advances and when it aborts (the defaults scale Flagger's to one machine)."""

    #: The candidate's share of requests at each step, in percent (empty for a shadow).
    steps: list[float] = field(default_factory=lambda: list(DEFAULT_STEPS))
    #: How long each step runs before it is judged and the next begins.
    step_seconds: float = 60.0
    #: Answers the candidate must give in a step before errors and latency are judged.
    min_requests: int = 100
    max_error_increase: float = 0.01
    max_latency_ratio: float = 1.5
    latency_slack: float = 0.010
    min_agreement: float = 0.8
    max_accuracy_drop: float = 0.02
    min_labelled: int = 30

    def __post_init__(self) -> None:
        check_steps(self.steps)
        for name in ("step_seconds", "latency_slack", "max_error_increase", "max_accuracy_drop"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be 0 or more, not {getattr(self, name)}")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"min_agreement must be between 0 and 1, not {self.min_agreement}")
        if self.max_latency_ratio < 1.0:
            raise ValueError(f"max_latency_ratio must be 1 or more, not {self.max_latency_ratio}")
        if self.min_requests < 1 or self.min_labelled < 1:
            raise ValueError("min_requests and min_labelled must be 1 or more")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_steps(steps: list[float]) -> list[float]:
    """Weights that rise, each above 0 and at most 100 (a ValueError says which is wrong)."""
    for weight in steps:
        if not 0.0 < weight <= 100.0:
            raise ValueError(f"a canary step is a share above 0 and at most 100 percent, not {weight:g}")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise ValueError(f"canary steps must rise: {', '.join(f'{w:g}' for w in steps)}")
    return steps


def parse_steps(text: str) -> list[float]:
    """'5,25,50,100' (percent signs allowed) as weights; a ValueError names the part it cannot read."""
    steps = []
    for part in text.replace(" ", "").split(","):
        try:
            steps.append(float(part.rstrip("%")))
        except ValueError:
            raise ValueError(f"canary steps are percentages like 5,25,50,100; cannot read {part!r}") from None
    if not steps:
        raise ValueError("give at least one canary step, e.g. 5,25,50,100")
    return check_steps(steps)


@dataclass
class Counts:
    """What one version answered over a span: requests by status class and the latency histogram."""

    requests: float = 0.0
    server_errors: float = 0.0
    buckets: list[float] = field(default_factory=lambda: [0.0] * (len(LATENCY_BUCKETS) + 1))

    @classmethod
    def of(cls, codes: dict[str, float], buckets: list[float]) -> Counts:
        errors = sum(c for code, c in codes.items() if code.startswith("5"))
        return cls(sum(codes.values()), errors, list(buckets))

    def minus(self, earlier: Counts) -> Counts:
        return Counts(
            max(0.0, self.requests - earlier.requests),
            max(0.0, self.server_errors - earlier.server_errors),
            [max(0.0, a - b) for a, b in zip(self.buckets, earlier.buckets, strict=True)],
        )

    @property
    def error_ratio(self) -> float | None:
        return self.server_errors / self.requests if self.requests else None

    @property
    def p99(self) -> float | None:
        return quantile(0.99, self.buckets)

    def over(self, limit: float) -> float:
        """Answers that may have taken longer than `limit` seconds (their bucket reaches past it)."""
        bounds = (*LATENCY_BUCKETS, float("inf"))
        return sum(count for bound, count in zip(bounds, self.buckets, strict=True) if bound > limit)


@dataclass
class Check:
    """One comparison: its verdict, both versions' figures and a sentence saying why."""

    name: str
    verdict: str
    baseline: float | str | None
    candidate: float | str | None
    why: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Evidence:
    """What the checks judge, gathered by the supervisor for one span."""

    baseline: Counts
    candidate: Counts
    #: (rows on which both versions agree, rows compared), or None before the first comparison.
    agreement: tuple[int, int] | None = None
    #: The drift status (`registry.monitoring.drift`: ok, warn, drift, ...) of the candidate's recent
    #: inputs against the serving version's reference and against the candidate's, when computed.
    drift: tuple[str | None, str | None] = (None, None)
    #: Each version's realised figures since the rollout began (`registry.monitoring.performance`).
    performance: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None)


def judge(settings: AnalysisSettings, evidence: Evidence, shadow: bool = False) -> list[Check]:
    """Every check of `evidence` under `settings`, in a fixed order. A `shadow` runs at a lower CPU
    priority than the serving version, so its latency is said to include waiting for the CPU."""
    latency = _latency(settings, evidence.baseline, evidence.candidate)
    if shadow and latency.verdict != WAIT:
        latency.why += " (the shadow's, at a lower CPU priority: it includes waiting for the CPU)"
    return [
        _errors(settings, evidence.baseline, evidence.candidate),
        latency,
        _agreement(settings, evidence.agreement),
        _drift(evidence.drift),
        _performance(settings, evidence.performance),
    ]


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.verdict == FAIL]


def ready(checks: list[Check]) -> bool:
    """Whether the step has what it needs to pass: errors and latency judged (the rest may wait)."""
    return all(c.verdict == PASS for c in checks if c.name in ("errors", "latency")) and not failed(checks)


def summary(checks: list[Check]) -> str:
    """The failed checks' reasons, or the verdicts in a line."""
    bad = failed(checks)
    if bad:
        return "; ".join(c.why for c in bad)
    return ", ".join(f"{c.name} {c.verdict}" for c in checks)


def _enough(settings: AnalysisSettings, candidate: Counts) -> str | None:
    if candidate.requests < settings.min_requests:
        return f"{candidate.requests:.0f} of {settings.min_requests} candidate requests so far"
    return None


def _errors(settings: AnalysisSettings, baseline: Counts, candidate: Counts) -> Check:
    base, cand = baseline.error_ratio or 0.0, candidate.error_ratio
    allowed = base + settings.max_error_increase
    if cand is not None and cand > allowed and candidate.server_errors >= 2:
        why = f"errors: candidate {cand:.2%} of requests failed, serving version {base:.2%}"
        return Check("errors", FAIL, base, cand, why)
    waiting = _enough(settings, candidate)
    if waiting:
        return Check("errors", WAIT, base, cand, waiting)
    bound = wilson_upper(candidate.server_errors, candidate.requests)
    if bound > allowed:  # not worse so far, but too few answers to say it is not
        why = f"errors {cand or 0:.2%} so far; up to {bound:.2%} not ruled out yet (allowed {allowed:.2%})"
        return Check("errors", WAIT, base, cand, why)
    return Check("errors", PASS, base, cand, f"errors {cand or 0:.2%} vs {base:.2%}")


def wilson_upper(failures: float, trials: float, z: float = NormalDist().inv_cdf(0.95)) -> float:
    """The one-sided 95% Wilson upper bound of a failure rate seen as `failures` in `trials`."""
    if trials <= 0:
        return 1.0
    p = failures / trials
    denominator = 1 + z * z / trials
    centre = p + z * z / (2 * trials)
    spread = z * ((p * (1 - p) / trials + z * z / (4 * trials * trials)) ** 0.5)
    return min(1.0, (centre + spread) / denominator)


def _latency(settings: AnalysisSettings, baseline: Counts, candidate: Counts) -> Check:
    base, cand = baseline.p99, candidate.p99
    waiting = _enough(settings, candidate)
    if waiting or cand is None:
        return Check("latency", WAIT, base, cand, waiting or "no latency yet")
    if base is None:  # the serving version answered nothing to compare with (a first step of 100%)
        return Check("latency", PASS, base, cand, f"p99 {cand * 1000:.1f} ms; no serving-version answers")
    limit = max(base * settings.max_latency_ratio, base + settings.latency_slack)
    if cand > limit and candidate.over(limit) >= MIN_SLOW:
        why = f"latency: candidate p99 {cand * 1000:.1f} ms, serving version {base * 1000:.1f} ms"
        return Check("latency", FAIL, base, cand, why)
    return Check("latency", PASS, base, cand, f"p99 {cand * 1000:.1f} ms vs {base * 1000:.1f} ms")


def _agreement(settings: AnalysisSettings, agreement: tuple[int, int] | None) -> Check:
    if not agreement or not agreement[1]:
        return Check("agreement", WAIT, None, None, "no rows compared yet")
    share = agreement[0] / agreement[1]
    if agreement[1] < settings.min_requests:  # 7 of 9 rows is chance for models agreeing on 94%
        why = f"agree on {share:.1%} of {agreement[1]} rows so far ({settings.min_requests} needed)"
        return Check("agreement", WAIT, None, share, why)
    if share < settings.min_agreement:
        why = f"agreement: the versions agree on {share:.1%} of {agreement[1]} rows"
        return Check("agreement", FAIL, None, share, why)
    return Check("agreement", PASS, None, share, f"agree on {share:.1%} of {agreement[1]} rows")


def _drift(drift: tuple[str | None, str | None]) -> Check:
    base, cand = drift
    if base not in _DRIFT_RANK or cand not in _DRIFT_RANK:  # not computed, too few rows, no reference
        return Check("drift", WAIT, base, cand, f"no drift verdict yet ({cand or 'not computed'})")
    if cand == DRIFT and base != DRIFT:
        why = f"drift: the live inputs drifted from the candidate's reference (the serving version's: {base})"
        return Check("drift", FAIL, base, cand, why)
    return Check("drift", PASS, base, cand, f"drift {cand} vs {base}")


def _performance(
    settings: AnalysisSettings, performance: tuple[dict[str, Any] | None, dict[str, Any] | None]
) -> Check:
    base, cand = performance
    enough = settings.min_labelled
    if not base or not cand or base.get("labelled", 0) < enough or cand.get("labelled", 0) < enough:
        return Check("performance", WAIT, None, None, f"fewer than {enough} labels per version")
    if "accuracy" in base and "accuracy" in cand:
        b, c = float(base["accuracy"]), float(cand["accuracy"])
        if c < b - settings.max_accuracy_drop:
            return Check(
                "performance", FAIL, b, c, f"performance: candidate accuracy {c:.1%}, serving {b:.1%}"
            )
        return Check("performance", PASS, b, c, f"accuracy {c:.1%} vs {b:.1%}")
    if "mae" in base and "mae" in cand:
        b, c = float(base["mae"]), float(cand["mae"])
        if c > b * (1 + settings.max_accuracy_drop) and c - b > 1e-12:
            return Check("performance", FAIL, b, c, f"performance: candidate MAE {c:.4g}, serving {b:.4g}")
        return Check("performance", PASS, b, c, f"MAE {c:.4g} vs {b:.4g}")
    return Check("performance", WAIT, None, None, "no comparable figures")


def agreement(baseline: list[Any], candidate: list[Any], classes: bool) -> tuple[int, int]:
    """(rows on which two versions' predictions agree, rows compared): equal classes, or for numbers
    within 1% of the spread of the serving version's predictions (at least 1e-9)."""
    if classes:
        same = sum(1 for a, b in zip(baseline, candidate, strict=True) if str(a) == str(b))
        return same, len(baseline)
    values = [float(v) for v in baseline]
    mean = sum(values) / len(values) if values else 0.0
    spread = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5 if values else 0.0
    tolerance = max(1e-9, 0.01 * spread)
    same = sum(1 for a, b in zip(values, candidate, strict=True) if abs(a - float(b)) <= tolerance)
    return same, len(values)
