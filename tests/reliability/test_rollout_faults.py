"""Canaries and shadows under faults, with a real supervisor and clients under load: a slower candidate
is aborted on latency, a shadow is judged on copies while version 1 answers everything and is then
promoted by hand, a shadow that crashes costs the serving version nothing, and a supervisor SIGKILLed
during a canary leaves the workers serving, then the next supervisor aborts the canary and says so.
No client request fails in any of them.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import wait_until
from rolled import QUICK, Clients, Rolled, rolled_home

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rolled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rolled]:
    with rolled_home(tmp_path_factory) as rolled:
        yield rolled


def _new(rolled: Rolled, kind: str, before: int) -> list[Any]:
    """The ledger's `kind` events recorded after the first `before` of them."""
    return rolled.events(kind)[before:]


def _rollout(rolled: Rolled) -> Any:
    """The rollout under way in the status (None when none is)."""
    status = rolled.client.status().deployments[0]
    return status.rollout if "rollout" in status else None


def _pids(rolled: Rolled, role: str) -> list[int]:
    return [p.pid for p in rolled.client.status().deployments[0].processes if p.role == role]


def _candidates(rolled: Rolled) -> list[int]:
    return _pids(rolled, "candidate")


def _checks(rolled: Rolled) -> dict[str, dict[str, Any]]:
    rollout = _rollout(rolled)
    return {c["name"]: c for c in rollout.checks} if rollout is not None else {}


def _more(clients: Clients, count: int = 100) -> None:
    """Wait until the clients got `count` more answers."""
    seen = clients.total()
    wait_until(lambda: clients.total() >= seen + count, timeout=30, what=f"{count} more answers")


def _dead(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_slower_candidate_is_aborted_on_latency_with_no_failed_request(rolled: Rolled) -> None:
    rolled.reset()
    aborted = len(rolled.events("aborted"))
    with Clients(rolled.url) as clients:
        # a 2 ms slack: the 300-tree forest (~14 ms a row here) is slower by a margin on any CPU
        analysis = {"steps": [10, 50, 100], **QUICK, "latency_slack": 0.002}
        started = rolled.client.deploy("m:4", rollout="canary", analysis=analysis)
        assert started.version == 1 and started.rollout.version == 4 and started.rollout.weight == 10
        candidates = _candidates(rolled)
        wait_until(lambda: _new(rolled, "aborted", aborted), timeout=60, what="the abort")
        wait_until(lambda: _rollout(rolled) is None, what="the rollout's end")
        # a request it took before the abort is still answered (it drains): counted once it has exited
        wait_until(lambda: all(_dead(pid) for pid in candidates), what="the candidate to exit")
        _more(clients, 20)
        slow = clients.by_version(4)
        _more(clients, 200)
        assert clients.by_version(4) == slow  # nothing reaches version 4 after the abort
    [event] = _new(rolled, "aborted", aborted)
    assert event.reason.startswith("latency:"), event.reason
    assert event.to_version == 4 and event.detail["mode"] == "canary"
    latency = next(c for c in event.detail["checks"] if c["name"] == "latency")
    assert latency["verdict"] == "fail" and latency["candidate"] > latency["baseline"]
    assert slow > 0  # version 4 did answer its share before the abort
    assert clients.failed() == {} and clients.lost == 0
    assert rolled.serving() == 1


def test_a_shadow_is_judged_on_copies_while_version_1_answers_then_is_promoted(rolled: Rolled) -> None:
    rolled.reset()
    promoted = len(rolled.events("promoted"))
    with Clients(rolled.url) as clients:
        started = rolled.client.deploy("m:2", rollout="shadow", analysis=dict(QUICK))
        assert started.version == 1 and started.rollout.mode == "shadow" and started.rollout.version == 2
        assert started.rollout.weight == 0 and started.rollout.steps == []
        for pid in _candidates(rolled):  # on a busy core the serving worker comes first
            assert {t.id: psutil.Process(t.id).nice() for t in psutil.Process(pid).threads()} == {
                t.id: 10 for t in psutil.Process(pid).threads()
            }
            group = Path(f"/proc/{pid}/autogroup")  # with the kernel's autogroups, the group's nice too
            assert not group.exists() or group.read_text().rstrip().endswith("nice 10")

        def judged() -> bool:  # latency too has figures, but a shadow runs at a lower CPU priority:
            checks = _checks(rolled)  # on a busy machine its p99 includes waiting for the CPU
            return bool(checks) and all(checks[name]["verdict"] == "pass" for name in ("agreement", "errors"))

        wait_until(judged, timeout=60, what="agreement and errors to pass")
        rollout = _rollout(rolled)
        assert rollout.mode == "shadow" and rollout.stage == "running" and rollout.next_check is None
        checks = _checks(rolled)
        for name in ("errors", "latency"):
            assert checks[name]["baseline"] is not None and checks[name]["candidate"] is not None, checks
        assert checks["agreement"]["candidate"] >= 0.8
        assert not [c for c in checks.values() if c["verdict"] == "fail" and c["name"] != "latency"], checks
        assert "at a lower CPU priority" in checks["latency"]["why"]

        def both_counted() -> dict[str, Any] | None:  # the copies the shadow answered are its own
            live = rolled.client.monitor().deployments["m"].live
            by_version = (live or {}).get("by_version") or {}
            ok = set(by_version) == {"1", "2"} and by_version["2"]["requests"] > 0
            return by_version if ok else None

        by_version = wait_until(both_counted, timeout=30, what="both versions counted")
        assert by_version["1"]["requests"] > 0
        traffic = _rollout(rolled).traffic
        assert traffic["mirrored"] > 0 and traffic["mirror_failed"] == 0, traffic
        assert {version for _, version in clients.answers} == {"1"}  # the shadow answers nobody
        assert clients.failed() == {} and clients.lost == 0

        after = rolled.client.promote("m")
        assert after.version == 2
        wait_until(lambda: _rollout(rolled) is None, what="the rollout's end")
        wait_until(lambda: clients.by_version(2) > 50, timeout=30, what="version 2 to answer")
    assert clients.failed() == {} and clients.lost == 0
    assert rolled.serving() == 2 and not _candidates(rolled)
    [event] = _new(rolled, "promoted", promoted)
    assert (event.from_version, event.to_version) == (1, 2)
    assert event.reason.startswith("promoted by hand"), event.reason
    rolled.reset()
    assert rolled.serving() == 1


def test_a_shadow_that_crashes_costs_the_serving_version_nothing(rolled: Rolled) -> None:
    rolled.reset()
    aborted = len(rolled.events("aborted"))
    with Clients(rolled.url) as clients:
        rolled.client.deploy("m:2", rollout="shadow", analysis=dict(QUICK))
        wait_until(
            lambda: (_checks(rolled).get("errors") or {}).get("candidate") is not None,
            timeout=30,
            what="the shadow to answer copies",
        )
        [victim] = _candidates(rolled)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: _new(rolled, "aborted", aborted), timeout=30, what="the abort")
        wait_until(lambda: _rollout(rolled) is None, what="the rollout's end")
        assert _dead(victim)
        _more(clients, 200)  # the serving version goes on answering
    [event] = _new(rolled, "aborted", aborted)
    assert f"candidate worker {victim} (version 2) exited" in event.reason, event.reason
    assert event.detail["mode"] == "shadow"
    assert not _candidates(rolled) and rolled.serving() == 1
    assert clients.failed() == {} and clients.lost == 0
    assert {version for _, version in clients.answers} == {"1"}


def test_a_supervisor_killed_during_a_canary_leaves_version_1_serving_and_the_next_aborts_it(
    rolled: Rolled,
) -> None:
    rolled.reset()
    aborted = len(rolled.events("aborted"))
    # A long step: the canary stays at 10% until the supervisor is killed.
    analysis = {"steps": [10, 50, 100], "step_seconds": 600.0, "min_requests": 50}
    with Clients(rolled.url) as clients:
        started = rolled.client.deploy("m:2", rollout="canary", analysis=analysis)
        assert started.rollout.weight == 10
        wait_until(lambda: clients.by_version(2) > 20, timeout=30, what="the canary's share")
        [candidate] = _candidates(rolled)
        serving = _pids(rolled, "active")
        old = rolled.client.status().supervisor.pid
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: _dead(old), timeout=10, what="the supervisor's death")

        # No supervisor: the serving worker still answers, its share still goes to the candidate.
        before = clients.by_version(2)
        _more(clients, 300)
        assert clients.failed() == {} and clients.lost == 0
        assert clients.by_version(2) > before  # the split outlives the supervisor
        assert psutil.pid_exists(candidate) and not _dead(candidate)

        rolled.client.ensure_running("--metrics=127.0.0.1:0")
        status = rolled.client.wait_settled()
        assert status.supervisor.pid != old
        assert _pids(rolled, "active") == serving  # adopted: the same worker serves on
        wait_until(lambda: _new(rolled, "aborted", aborted), timeout=30, what="the abort")
        wait_until(lambda: _dead(candidate), timeout=30, what="the candidate to stop")
        assert _rollout(rolled) is None and not _candidates(rolled)
        _more(clients, 20)
        canary = clients.by_version(2)
        _more(clients, 300)
        assert clients.by_version(2) == canary  # every request on version 1 again
    [event] = _new(rolled, "aborted", aborted)
    assert "the supervisor restarted during the rollout of version 2" in event.reason, event.reason
    assert "m serves version 1" in event.reason
    assert event.to_version == 2 and event.from_version == 1
    assert rolled.serving() == 1
    assert clients.failed() == {} and clients.lost == 0
