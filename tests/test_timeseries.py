"""Series the supervisor keeps from its pulls: increments, restarts as gaps, stale workers, quantiles."""

from __future__ import annotations

import pytest

from registry.monitoring.metrics import LATENCY_BUCKETS, ServingMetrics
from registry.monitoring.sampling import InputSampler
from registry.monitoring.timeseries import DeploymentSeries, quantile


def pull(metrics: ServingMetrics) -> dict:
    return {"metrics": metrics.snapshot()}


def test_quantile_interpolates_within_buckets_like_prometheus() -> None:
    counts = [0.0] * (len(LATENCY_BUCKETS) + 1)
    counts[2] = 100  # all between 0.25 ms and 0.5 ms
    assert quantile(0.5, counts) == pytest.approx(0.000375)
    assert quantile(0.99, counts) == pytest.approx(0.0004975)
    assert quantile(0.5, [0.0] * len(counts)) is None
    counts[-1] = 1000  # beyond the last bound: the last bound, as Prometheus answers
    assert quantile(0.99, counts) == LATENCY_BUCKETS[-1]


def test_points_count_increments_and_a_restarted_worker_is_a_gap_not_a_drop() -> None:
    series = DeploymentSeries("iris")
    worker = ServingMetrics("iris", 1)
    series.ingest(1, 1, {10: pull(worker)}, {10: None}, now=100.0)  # baseline
    for _ in range(30):
        worker.observe(200, 0.0003, 1)
    worker.observe(422, 0.0001, 0)
    worker.observe(500, 0.002, 1)
    point = series.ingest(
        2, 1, {10: pull(worker)}, {10: {"cpu": 50.0, "rss": 1e8, "threads": 4, "fds": 9}}, 101.0
    )
    assert (point["requests"], point["ok"], point["client_errors"], point["server_errors"]) == (32, 30, 1, 1)
    assert point["rows"] == 31 and point["cpu"] == 50.0 and point["stale"] == 0
    assert point["processes"] == {"10": {"cpu": 50.0, "rss": 1e8, "threads": 4, "fds": 9}}
    assert 0.00025 <= point["p50"] <= 0.0005
    restarted = ServingMetrics("iris", 1)  # pid 11 replaces pid 10, counting from zero
    gap = series.ingest(3, 1, {11: pull(restarted)}, {11: None}, 102.0)
    assert gap["requests"] == 0 and gap["cpu"] is None  # a gap: neither negative nor a fake zero cpu
    restarted.observe(200, 0.0003, 1)
    after = series.ingest(4, 1, {11: pull(restarted)}, {11: None}, 103.0)
    assert after["requests"] == 1
    assert series.totals[1].requests == {"200": 31, "422": 1, "500": 1}  # never decreases
    assert [p["seq"] for p in series.since(2)] == [3, 4]


def test_a_worker_that_does_not_answer_is_stale() -> None:
    series = DeploymentSeries("iris")
    worker = ServingMetrics("iris", 1)
    series.ingest(1, 1, {10: pull(worker)}, {10: None}, 100.0)
    point = series.ingest(2, 1, {10: None}, {10: {"cpu": 0.0, "rss": 1.0, "threads": 1, "fds": 1}}, 101.0)
    assert point["stale"] == 1 and point["workers"] == 1 and point["requests"] == 0


def test_the_sampler_keeps_a_bounded_random_choice_of_each_request() -> None:
    sampler = InputSampler(capacity=100, per_request=4, seed=7)  # seeded: the test must not be a draw
    sampler.add([[i] for i in range(40)], list(range(40)))
    cursor, rows, predictions = sampler.since(0)
    assert len(rows) == 4 and cursor == 4 and [r[0] for r in rows] == predictions  # rows keep their own
    assert predictions == sorted(set(predictions))  # distinct, in request order
    chosen = set()
    for _ in range(20):  # the same request again: other rows of it
        sampler.add([[i] for i in range(40)], list(range(40)))
        chosen.update(sampler.since(cursor)[2])
        cursor = sampler.sequence
    assert len(chosen) > 30
    sampler.add([[99]], [1])
    assert sampler.since(cursor)[1:] == ([[99]], [1])
    for _ in range(50):
        sampler.add([[1], [2], [3]], [0, 0, 0])
    assert len(sampler.since(0)[1]) == 100  # bounded


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_busy_worker_samples_about_its_rate_at_random_gaps_and_a_quiet_one_every_request() -> None:
    clock = FakeClock()
    sampler = InputSampler(capacity=10_000, seed=5, rows_per_second=100, clock=clock)
    for i in range(50):  # 50 rows in the first second: under the rate, every request is sampled
        sampler.add([[i]], [0])
    clock.now = 1.0
    assert len(sampler.pull(0)["rows"]) == 50 and sampler.stride == 1
    cursor = sampler.sequence
    for i in range(4000):  # 4,000 rows a second, kinds A and B taking turns
        sampler.add([["AB"[i % 2]]], [0])
    clock.now = 2.0
    sampler.pull(cursor)
    assert sampler.sequence - cursor == 4000  # every one: the stride is set at a pull, from the rate since
    assert sampler.stride == 40
    cursor = sampler.sequence
    for i in range(4000):
        sampler.add([["AB"[i % 2]]], [0])
    clock.now = 3.0
    rows = sampler.pull(cursor)["rows"]
    assert 70 <= len(rows) <= 130  # about 100 a second
    kinds = [row[0] for row in rows]
    assert min(kinds.count("A"), kinds.count("B")) >= len(rows) // 3  # a fixed gap of 40 takes only A
    for i in range(20):  # quiet again: the next pull sets the stride back to 1
        sampler.add([[i]], [0])
    clock.now = 5.0
    sampler.pull(sampler.sequence)
    before = sampler.sequence
    for i in range(20):
        sampler.add([[i]], [0])
    assert sampler.stride == 1 and sampler.sequence - before == 20


def test_a_burst_after_a_quiet_spell_is_thinned_after_a_seconds_worth_not_at_the_next_pull() -> None:
    clock = FakeClock()
    sampler = InputSampler(capacity=10_000, seed=3, rows_per_second=256, clock=clock)
    clock.now = 5.0
    sampler.pull(0)  # quiet since the start: every request is sampled
    assert sampler.stride == 1
    for i in range(4000):  # then 4,000 requests in one second, and no pull in between
        clock.now = 5.0 + i / 4000
        sampler.add([[i]], [0])
    rows = [row[0] for row in sampler.since(0)[1]]
    assert rows[:256] == list(range(256))  # a second's worth kept whole (a short burst is all kept)
    assert 12 <= sampler.stride <= 20  # then thinned at once: 4,000 / 256 = 15.6
    assert 256 + 150 <= len(rows) <= 256 + 400  # about 256 more over the rest of the second
    assert max(rows) > 3500  # sampled to the end of the burst, not only its start


def test_a_busy_worker_of_many_row_requests_samples_about_its_rate_too() -> None:
    """100-row requests give the sample at most 8 rows each: the stride is set from those, so the
    sample keeps about 256 rows a second, not 256 / 100 * 8 (20)."""
    clock = FakeClock()
    sampler = InputSampler(capacity=10_000, seed=4, rows_per_second=256, clock=clock)
    batch = [[i] for i in range(100)]
    for second in range(3):  # 100 requests of 100 rows a second, a pull at the end of each
        for i in range(100):
            clock.now = second + i / 100
            sampler.add(batch, [0] * 100)
        before = sampler.sequence
        clock.now = second + 1.0
        sampler.pull(sampler.sequence)
    for i in range(100):
        clock.now = 3 + i / 100
        sampler.add(batch, [0] * 100)
    assert 150 <= sampler.sequence - before <= 400  # about 256
    assert sampler.stride == 3  # 800 sampleable rows a second / 256


def test_a_worker_started_by_this_supervisor_counts_from_zero_an_adopted_one_from_first_sight() -> None:
    started, adopted = ServingMetrics("iris", 1), ServingMetrics("iris", 1)
    for metrics in (started, adopted):
        for _ in range(5):
            metrics.observe(200, 0.0003, 1)
    series = DeploymentSeries("iris")
    point = series.ingest(1, 1, {10: pull(started), 11: pull(adopted)}, {}, 100.0, fresh={10})
    assert point["requests"] == 5  # the adopted worker's earlier requests were counted by its old supervisor


def test_a_standby_that_serves_again_continues_from_its_counts() -> None:
    worker = ServingMetrics("iris", 1)
    series = DeploymentSeries("iris")
    for _ in range(5):
        worker.observe(200, 0.0003, 1)
    series.ingest(1, 1, {10: pull(worker)}, {}, 100.0, fresh={10})
    series.ingest(2, 2, {}, {}, 101.0, fresh=set(), alive={10})  # 10 is on standby now
    worker.observe(200, 0.0003, 1)
    back = series.ingest(3, 1, {10: pull(worker)}, {}, 102.0, fresh={10})
    assert back["requests"] == 1  # not its 6 requests all over again


def test_a_pull_is_bounded_and_the_cursor_continues_where_it_stopped() -> None:
    sampler = InputSampler(capacity=100, per_request=1)
    for i in range(30):
        sampler.add([[i, "x" * 50]], [i % 2])
    first = sampler.pull(0, max_rows=10)
    assert [r[0] for r in first["rows"]] == list(range(10)) and first["dropped"] == 0
    second = sampler.pull(first["cursor"], max_rows=100, max_bytes=700)  # about 70 bytes a row
    assert 1 <= len(second["rows"]) < 20 and second["rows"][0][0] == 10
    rest = sampler.pull(second["cursor"])
    assert [r[0] for r in second["rows"] + rest["rows"]] == list(range(10, 30))
    assert rest["cursor"] == sampler.sequence and sampler.pull(rest["cursor"])["rows"] == []


def test_a_pull_counts_rows_that_fell_out_of_the_ring_and_can_skip_ahead() -> None:
    sampler = InputSampler(capacity=10, per_request=1)
    for i in range(25):
        sampler.add([[i]], [0])
    page = sampler.pull(3)
    assert page["dropped"] == 12 and [r[0] for r in page["rows"]] == list(range(15, 25))
    assert sampler.pull(-1) == {"cursor": 25, "rows": [], "predictions": [], "dropped": 0}
    sampler.add([["y" * 5000]], [1])  # one row over the byte budget on its own
    alone = sampler.pull(25, max_bytes=1000)
    assert alone["rows"] == [] and alone["dropped"] == 1 and alone["cursor"] == 26


def test_a_loading_version_has_its_totals_at_zero_before_it_serves() -> None:
    series = DeploymentSeries("iris")
    point = series.ingest(1, 1, {10: None, 11: None}, {}, 100.0, versions={10: 1, 11: 2}, serving={10})
    assert series.totals.keys() == {1, 2} and series.totals[2].requests == {}  # the exporter shows it at 0
    assert (point["workers"], point["stale"]) == (1, 1)  # the loading worker is not one of the serving
