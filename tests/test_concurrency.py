"""Version numbers under concurrency and crashes, with real processes on SQLite and PostgreSQL.

The children call `Registry.add_version` (the transactional half of `register`) with a model the
parent serialised with skops, so they import the registry but not scikit-learn: they start fast.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
from typing import Any

import pytest
from helpers import wait_for_the_others

from registry import Registry, core


def _register_versions(db_url: str, home: str, captured: Any, name: str, count: int) -> list[int]:
    """Child process: open the registry, wait for the others, then register `count` versions."""
    with Registry(home=home, db_url=db_url) as reg:
        wait_for_the_others()
        return [reg.add_version(captured, name).version for _ in range(count)]


def _move_alias(db_url: str, home: str, name: str, count: int) -> list[int]:
    """Child process: point `champion` at each of versions 1-4 in turn, `count` times, all at once."""
    with Registry(home=home, db_url=db_url) as reg:
        wait_for_the_others()
        return [reg.set_alias(name, "champion", 1 + i % 4).version for i in range(count)]


def _die(*_args: Any, **_kwargs: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _crash_while_registering(db_url: str, home: str, captured: Any, name: str) -> None:
    """Child process: killed inside the write transaction, after the version's rows are written."""
    core._ensure_stored = _die
    with Registry(home=home, db_url=db_url) as reg:
        reg.add_version(captured, name)


@pytest.fixture(scope="module")
def captured(array_model):
    from registry.capture import capture

    model, X = array_model
    return capture(model, X[:20])


@pytest.mark.slow
def test_four_processes_registering_at_once_get_versions_1_to_20(
    registry: Registry, db_url, captured, four_processes
):
    """The model does not exist yet, so its creation races too."""
    home = str(registry.settings.home)
    numbers = four_processes(_register_versions, db_url, home, captured, "race", 5)
    assert all(len(mine) == 5 and mine == sorted(mine) for mine in numbers)
    assert sorted(n for mine in numbers for n in mine) == list(range(1, 21))
    assert [v.version for v in registry.versions("race")] == list(range(1, 21))
    [model] = registry.list_models()
    assert (model.name, model.versions, model.latest_version) == ("race", 20, 20)
    events = registry.history("race").events
    assert sorted(e.to_version for e in events if e.kind == "registered") == list(range(1, 21))
    assert registry.add_version(captured, "race").version == 21


@pytest.mark.slow
def test_four_processes_moving_one_alias_at_once_leave_a_ledger_of_moves_that_chain(
    registry: Registry, db_url, captured, four_processes
):
    """Each move reads where the alias pointed after the previous holder of the model's lock
    committed, so every recorded move starts where the one before it ended."""
    for _ in range(4):
        registry.add_version(captured, "moved")
    home = str(registry.settings.home)
    numbers = four_processes(_move_alias, db_url, home, "moved", 6)
    assert [sorted(mine) for mine in numbers] == [[1, 1, 2, 2, 3, 4]] * 4
    moves = [e for e in registry.history("moved").events if e.kind == "alias_set"]
    assert len(moves) == 24
    assert moves[0].from_version is None
    assert all(later.from_version == earlier.to_version for earlier, later in itertools.pairwise(moves))
    assert registry.get("moved@champion").version == moves[-1].to_version
    assert registry.get(f"moved:{moves[-1].to_version}").aliases == ["champion"]


@pytest.mark.slow
def test_a_process_killed_mid_registration_leaves_no_version_and_no_gap(registry: Registry, db_url, captured):
    """One child dies adding version 2 of an existing model, another creating a new model."""
    registry.add_version(captured, "iris", aliases=["champion"])
    ctx = multiprocessing.get_context("spawn")
    home = str(registry.settings.home)
    children = [
        ctx.Process(target=_crash_while_registering, args=(db_url, home, captured, name))
        for name in ("iris", "fresh")
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == -signal.SIGKILL

    assert [m.name for m in registry.list_models()] == ["iris"]
    assert [v.version for v in registry.versions("iris")] == [1]
    assert registry.get("iris@champion").version == 1
    assert [(e.kind, e.to_version) for e in registry.history("iris").events] == [
        ("registered", 1),
        ("alias_set", 1),
    ]
    assert registry.add_version(captured, "iris").version == 2
    assert registry.add_version(captured, "fresh").version == 1


def test_an_error_mid_registration_leaves_no_version_and_no_gap(
    registry: Registry, captured, iris, iris_model, monkeypatch
):
    X, _ = iris
    registry.register(iris_model, "iris", reference=X, alias="champion")

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(core, "_ensure_stored", fail)  # called in the transaction, after the rows are written
    for name in ("iris", "fresh"):
        with pytest.raises(RuntimeError, match="disk on fire"):
            registry.register(iris_model, name, reference=X, alias="staging", tags={"k": "v"})
    monkeypatch.undo()

    assert [m.name for m in registry.list_models()] == ["iris"]
    [only] = registry.versions("iris")
    assert (only.version, only.aliases, only.tags) == (1, ["champion"], {})
    assert [e.kind for e in registry.history("iris").events] == ["registered", "alias_set"]
    assert registry.register(iris_model, "iris", reference=X).version == 2
    assert registry.register(iris_model, "fresh", reference=X).version == 1
