"""Model calls off the event loop (registry.serving.calls): inline only where cheap, a timeout, a bound."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from registry.serving import calls
from registry.serving.batching import MicroBatcher
from registry.serving.calls import ModelCaller, ModelTimeout


def where(rows):
    return [threading.current_thread().name for _ in rows]


def test_fast_models_run_small_calls_inline_and_slow_ones_in_threads() -> None:
    async def scenario():
        fast, slow = ModelCaller(0.0001), ModelCaller(0.01)
        return await fast(where, [[1]]), await fast(where, [[1]] * 5000), await slow(where, [[1]])

    small, large, slow = asyncio.run(scenario())
    # a large call goes to one of the pool's threads (whichever takes it first), whole
    assert small == ["MainThread"] and len(set(large)) == 1 and large[0].startswith("model-")
    assert slow[0].startswith("model-")


def test_a_fast_model_that_turns_slow_moves_to_the_threads(monkeypatch) -> None:
    monkeypatch.setattr(calls, "DEMOTE_SECONDS", 0.01)

    async def scenario():
        caller = ModelCaller(0.0001)
        inline = []
        for _ in range(calls.DEMOTE_AFTER):
            await caller(lambda rows: time.sleep(0.02) or [0], [[1]])
            inline.append(caller.inline)
        return inline, await caller(where, [[1]]), await caller.run_alone(where, [[1]])

    inline, after, alone = asyncio.run(scenario())
    assert alone[0].startswith("model-")  # a lone request too
    assert inline == [True] * (calls.DEMOTE_AFTER - 1) + [False] and after[0].startswith("model-")


def test_a_lone_request_of_a_batched_model_runs_inline_and_a_crowd_goes_to_the_threads() -> None:
    """A forest-like model (4 ms a call, 10 us more a row; batched): a request no other waits beside is
    called on the event loop when the warm-up's figures put it under ALONE_SECONDS (a thread hand-off
    would only add latency); requests arriving together are one batch in a thread, so the loop keeps
    reading requests meanwhile. A lone call expected to take longer (many rows of a model that costs
    per row, or a slower model), one of over INLINE_ROWS rows whatever the figures, or a model with
    a predict timeout, runs in the threads."""

    def batched(caller: ModelCaller, max_rows: int = 1024) -> MicroBatcher:
        return MicroBatcher(where, max_rows=max_rows, run=caller.threaded, run_alone=caller.run_alone)

    async def scenario():
        forest = batched(ModelCaller(0.004, row_seconds=0.00001))
        alone = await forest.submit([[1]]) + await forest.submit([[1]] * 300)  # 4 ms, then 16 ms
        together = await asyncio.gather(*(forest.submit([[i]]) for i in range(5)))
        # the first lone request after a crowd is a gap between crowds (a thread); the next is alone
        together.append(await forest.submit([[1]]))
        alone += await forest.submit([[1]])
        # one row a batch: each request is a batch of its own, but the others wait beside it
        one_by_one = batched(ModelCaller(0.004), max_rows=1)
        together += await asyncio.gather(*(one_by_one.submit([[i]]) for i in range(3)))
        per_row = batched(ModelCaller(0.004))  # each row as dear as the first (not measured)
        alone += await per_row.submit([[1]] * 5)  # 20 ms: still inline
        # a model whose warm-up timed many rows no slower than one: each row still costs 1% of a call
        free_rows = batched(ModelCaller(0.004, row_seconds=0.0))
        alone += await free_rows.submit([[1]] * 400)  # 4 ms + 399 x 40 us: 19.96 ms
        longer = [
            await free_rows.submit([[1]] * 402),  # 20.04 ms
            await batched(ModelCaller(0.00001, row_seconds=0.0)).submit([[1]] * (calls.INLINE_ROWS + 1)),
            await per_row.submit([[1]] * 6),  # 24 ms
            await batched(ModelCaller(calls.ALONE_SECONDS * 2)).submit([[1]]),
            await batched(ModelCaller(0.004, timeout=5)).submit([[1]]),
            await batched(ModelCaller(None)).submit([[1]]),  # no warm-up figures
        ]
        return alone, together, longer, forest.batches

    alone, together, longer, batches = asyncio.run(scenario())
    assert set(alone) == {"MainThread"}
    assert batches == 5 and all(answer[0].startswith("model-") for answer in together)
    assert all(answer[0].startswith("model-") for answer in longer), longer


def test_one_slow_call_among_fast_ones_keeps_the_model_inline(monkeypatch) -> None:
    """A stall (the process descheduled mid-call on a busy machine) is not a slow model: only slow
    calls in a row move it to the threads."""
    monkeypatch.setattr(calls, "DEMOTE_SECONDS", 0.01)

    def sometimes_slow(rows):
        if rows[0][0] == "slow":
            time.sleep(0.02)
        return where(rows)

    async def scenario():
        caller = ModelCaller(0.0001)
        answers = []
        for _ in range(3):
            for _ in range(calls.DEMOTE_AFTER - 1):
                await caller(sometimes_slow, [["slow"]])
            answers.append(await caller(sometimes_slow, [["fast"]]))
        return caller.inline, answers

    inline, answers = asyncio.run(scenario())
    assert inline is True and all(a == ["MainThread"] for a in answers)


def test_a_call_over_the_timeout_answers_503_and_stuck_calls_are_bounded() -> None:
    release = threading.Event()

    def stuck(rows):
        release.wait(10)
        return [0]

    async def scenario():
        caller = ModelCaller(0.0001, timeout=0.05, threads=3)
        assert caller.inline is False  # a timeout needs the threads
        errors = []
        for _ in range(3):
            with pytest.raises(ModelTimeout) as caught:
                await caller(stuck, [[1]])
            errors.append(caught.value)
        release.set()
        for _ in range(100):
            if caller.stuck == 0:
                break
            await asyncio.sleep(0.01)
        return errors, caller.stuck, await caller(lambda rows: [1], [[1]])

    errors, left, answer = asyncio.run(scenario())
    assert errors[0].status == 503 and "predict timeout of 0.05 s" in errors[0].message
    assert "still running past the predict timeout" in errors[2].message  # refused: 2 already stuck
    assert left == 0 and answer == [1]


def test_a_batch_over_the_timeout_fails_its_requests_without_retrying_them_one_by_one() -> None:
    runs = []

    def slow(rows):
        runs.append(len(rows))
        time.sleep(0.2)
        return [0] * len(rows)

    async def scenario():
        caller = ModelCaller(0.01, timeout=0.05)
        batcher = MicroBatcher(slow, run=caller.threaded)
        return await asyncio.gather(*(batcher.submit([[i]]) for i in range(4)), return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(r, ModelTimeout) for r in results)
    assert len(runs) <= 2  # the first request alone, then one batch of the rest: no retries


@pytest.mark.parametrize("command", ["serve", "deploy"])
def test_the_predict_timeout_option_is_checked(home, command) -> None:
    from typer.testing import CliRunner

    from console.cli import app

    result = CliRunner().invoke(app, [command, "iris", "--predict-timeout", "0"])
    assert result.exit_code == 1
    assert "--predict-timeout must be above 0" in result.output


def test_the_predict_timeout_reaches_the_worker_command(tmp_path, monkeypatch) -> None:
    import subprocess

    from registry.serving.processes import WorkerSpec, spawn
    from registry.serving.rundir import RunDir

    started = []

    class Popen:
        pid = 1

        def __init__(self, command, **kwargs):
            started.append(command)

    monkeypatch.setattr(subprocess, "Popen", Popen)
    rundir = RunDir.of(tmp_path).create()
    spec = WorkerSpec(tmp_path, "iris", "iris", 1, 3, {"predict_timeout": 2.5}, 1.0)
    spawn(spec, rundir, None)
    command = started[0]
    assert command[command.index("--predict-timeout") + 1] == "2.5"
