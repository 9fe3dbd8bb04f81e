"""What the console changes, each as ask → act in a worker → report: deploy, roll back, stop, set alias.

Keys on the screens and `:` commands both come here, so a confirmation always names the same model,
version and target whichever way the user asked. Nothing here blocks the UI thread: names are resolved
against the registry in a worker before the question is asked.

A deployment placed on other hosts of a shared registry is changed through the database, as the CLI
does (`registry.placement`: a request, then a wait for each placed host's supervisor), never through
this host's supervisor; the progress line says what each host did (`b: rolled back to version 1`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from console.backend import PLACED_WAIT
from console.widgets.ask import Ask
from console.widgets.confirm import Confirm
from registry.errors import RegistryError

if TYPE_CHECKING:
    from console.app import ModeldeckApp
    from registry.info import DeploymentInfo
    from registry.placement import Outcome


PROGRESS_EVERY = 0.25  # seconds between looks at the ledger while an action runs
LINGER = 6.0  # seconds the finished action's steps stay in the banner

Call = Callable[[], Any]  # blocking: runs in a worker thread; its result goes to the Report
Report = Callable[[Any], str]  # the call's result (e.g. a protocol answer) as one line for the user


class Operations:
    """Owned by the app; its workers belong to the app so they outlive the screen that started them."""

    def __init__(self, app: ModeldeckApp) -> None:
        self.deck = app

    # ------------------------------------------------------------------ deploy
    def deploy(self, ref: str, name: str | None = None) -> None:
        """Resolve `ref` (`iris`, `iris:2`, `iris@champion`), then ask to deploy it as `name` (its model)."""
        if self._refused("deploying"):
            return
        self.deck.run_worker(lambda: self._resolve_and_ask(ref, name), thread=True, group="resolve")

    def _resolve_and_ask(self, ref: str, name: str | None) -> None:
        try:
            version = self.deck.backend.version(ref)
        except RegistryError as exc:
            self.deck.call_from_thread(self.deck.notify, f"cannot deploy {ref}: {exc}", severity="error")
            return
        alias = ref.partition("@")[2] or None
        self.deck.call_from_thread(self._ask_deploy, version.name, version.version, alias, name)

    def _ask_deploy(self, model: str, version: int, alias: str | None, name: str | None) -> None:
        target = name or model
        exact = f"{model}:{version}"
        current = self._deployment(target)
        if current is not None and (current.model, current.version) == (model, version):
            self.deck.notify(
                f"{exact} already serves on deployment {target} ({current.host}:{current.port}):"
                " nothing to deploy",
                severity="warning",
            )
            return
        label = f" (@{alias})" if alias else ""
        if current is not None and self._elsewhere(current):
            self._confirm_placed(
                f"Deploy {exact}{label} to deployment {target}?",
                f"now serving {current.model}:{current.version} {_on(current)}",
                f"deploying {exact}",
                "deploy",
                target,
                ref=exact,
            )
            return
        where = (
            f"now serving {current.model}:{current.version} on {current.host}:{current.port}"
            if current
            else "a new deployment"
        )
        self._confirm(
            f"Deploy {exact}{label} to deployment {target}?",
            where,
            f"deploying {exact}",
            lambda: self.deck.backend.deploy(exact, name=target),
            lambda r: f"{target}: {r.model}:{r.version} serves on {r.outside_url or r.url}",
            target,
        )

    # ------------------------------------------------------------------ canary, shadow, promote, abort
    def rollout(self, ref: str, mode: str, name: str | None = None) -> None:
        """Ask to try `ref` as a canary (default steps) or shadow beside what its deployment serves."""
        if self._refused(f"starting a {mode}"):
            return

        def resolve() -> None:
            try:
                version = self.deck.backend.version(ref)
            except RegistryError as exc:
                self.deck.call_from_thread(self.deck.notify, f"no {mode} of {ref}: {exc}", severity="error")
                return
            self.deck.call_from_thread(self._ask_rollout, version.name, version.version, mode, name)

        self.deck.run_worker(resolve, thread=True, group="resolve")

    def _ask_rollout(self, model: str, version: int, mode: str, name: str | None) -> None:
        target, exact = name or model, f"{model}:{version}"
        current = self._deployment(target)
        if current is None:
            self.deck.notify(
                f"a {mode} needs {target} serving: deploy a version first (d)", severity="warning"
            )
            return
        if current.version == version:
            self.deck.notify(f"{target} already serves {exact}", severity="warning")
            return
        how = (
            "5% → 25% → 50% → 100% of requests, a minute each; promoted when every check passes, "
            "aborted when one fails (P / A by hand)"
            if mode == "canary"
            else "a copy of every request, answered by nobody; promote (P) or abort (A) by hand"
        )
        if self._elsewhere(current):
            self._confirm_placed(
                f"{mode.capitalize()} {exact} beside {current.model}:{current.version} on {target}?",
                f"{how}; {_on(current)}",
                f"starting the {mode} of {exact}",
                mode,
                target,
                ref=exact,
            )
            return
        self._confirm(
            f"{mode.capitalize()} {exact} beside {current.model}:{current.version} on {target}?",
            how,
            f"starting the {mode} of {exact}",
            lambda: self.deck.backend.deploy(exact, name=target, rollout=mode),
            lambda r: f"{target}: {mode} of {exact} under way",
            target,
        )

    def promote(self, name: str) -> None:
        d = self._known(name, "promoting")
        if d is None:
            return
        if self._elsewhere(d):
            self._confirm_placed(
                f"Promote {name}'s candidate now?",
                f"it becomes the serving version {_on(d)}",
                f"promoting {name}",
                "promote",
                name,
            )
            return
        self._confirm(
            f"Promote {name}'s candidate now?",
            "it becomes the serving version (a switch); the old one stays warm as the standby",
            f"promoting {name}",
            lambda: self.deck.backend.promote(name),
            lambda r: f"{name}: promoted; {r.model}:{r.version} serves",
            name,
        )

    def abort(self, name: str) -> None:
        d = self._known(name, "aborting")
        if d is None:
            return
        if self._elsewhere(d):
            self._confirm_placed(
                f"Abort {name}'s canary or shadow?",
                f"every request goes to the serving version; the candidate stops {_on(d)}",
                f"aborting {name}",
                "abort",
                name,
            )
            return
        self._confirm(
            f"Abort {name}'s canary or shadow?",
            "every request goes to the serving version at once; the candidate stops",
            f"aborting {name}",
            lambda: self.deck.backend.abort(name),
            lambda r: f"{name}: aborted; {r.model}:{r.version} serves every request",
            name,
        )

    # ------------------------------------------------------------------ roll back, stop
    def rollback(self, name: str) -> None:
        d = self._known(name, "rolling back")
        if d is None:
            return
        target = (
            f"version {d.standby_version} (warm standby)" if d.standby_version else "the previous version"
        )
        if self._elsewhere(d):
            self._confirm_placed(
                f"Roll back {name}: {d.model}:{d.version} → {target}?",
                _on(d),
                f"rolling back {name}",
                "rollback",
                name,
            )
            return
        self._confirm(
            f"Roll back {name}: {d.model}:{d.version} → {target}?",
            f"on {d.host}:{d.port}",
            f"rolling back {name}",
            lambda: self.deck.backend.rollback(name),
            lambda r: f"{name}: {r.model}:{r.version} serves again",
            name,
        )

    def stop(self, name: str) -> None:
        d = self._known(name, "stopping")
        if d is None:
            return
        if self._elsewhere(d):
            self._confirm_placed(
                f"Stop {name} ({d.model}:{d.version} on {', '.join(d.placement)})?",
                f"clients get refused; {_on(d)}",
                f"stopping {name}",
                "stop",
                name,
            )
            return
        self._confirm(
            f"Stop {name} ({d.model}:{d.version} on {d.host}:{d.port})?",
            "clients get refused",
            f"stopping {name}",
            lambda: self.deck.backend.stop(name),
            lambda r: f"{name}: stopped",
            name,
        )

    # ------------------------------------------------------------------ aliases
    def set_alias(self, ref: str, alias: str) -> None:
        """Point `alias` of the model at the version `ref` names (no deployment changes: no question)."""
        if self._refused("setting aliases"):
            return
        model = ref.partition(":")[0].partition("@")[0]
        self.act(
            f"setting {model}@{alias}",
            lambda: self.deck.backend.set_alias(ref, alias).as_dict(),
            lambda r: f"{model}@{alias} → version {r['version']}",
        )

    # ------------------------------------------------------------------ objectives and silences
    def objectives(self, name: str) -> None:
        """Ask for `name`'s objectives on one line (what is not given stays as it is)."""
        if self._known(name, "setting objectives") is None:
            return

        def answered(text: str | None) -> None:
            if text:
                self.act(
                    f"setting {name}'s objectives",
                    lambda: self.deck.backend.set_objectives(name, text),
                    lambda specs: "; ".join(f"{name}: {s.describe()}" for s in specs),
                )

        question = f"Objectives of {name} (what you leave out stays as it is):"
        self.deck.push_screen(
            Ask(question, "availability=99.9 latency=250ms latency-target=99 drift=warn"), answered
        )

    def silence(self, name: str) -> None:
        """Ask how long (and why) to silence `name`'s alerts: they still show, the webhook is not told."""
        if self._known(name, "silencing alerts") is None:
            return

        def answered(text: str | None) -> None:
            if text:
                self.act(
                    f"silencing {name}",
                    lambda: self.deck.backend.silence(name, text),
                    lambda made: f"{name}: alerts silenced until {made.expires_at.astimezone():%H:%M:%S}",
                )

        self.deck.push_screen(Ask(f"Silence {name}'s alerts for (then why):", "2h deploying a fix"), answered)

    def unsilence(self, name: str) -> None:
        if self._known(name, "ending silences") is None:
            return
        self.act(
            f"ending {name}'s silences",
            lambda: self.deck.backend.unsilence(name),
            lambda ended: f"{name}: {len(ended)} silence(s) ended" if ended else f"{name}: no silence to end",
        )

    # ------------------------------------------------------------------ shared
    def act(self, title: str, call: Call, done: Report, deployment: str | None = None) -> None:
        """Run `call` in a worker; say that it started, the steps the ledger records for `deployment`
        while it runs (loading, ready, switched, drained), and how it ended."""
        self.deck.notify(f"{title}…", timeout=3)
        self.deck.run_worker(lambda: self._act(title, call, done, deployment), thread=True, group="action")

    def _act(self, title: str, call: Call, done: Report, deployment: str | None) -> None:
        started, clock = datetime.now(UTC), time.monotonic()
        steps: list[tuple[str, datetime]] = []
        try:
            with ThreadPoolExecutor(1) as pool:
                running = pool.submit(call)
                while True:
                    try:
                        result = running.result(timeout=PROGRESS_EVERY)
                        break
                    except TimeoutError:  # still running: the steps so far and the time it has taken
                        steps = self._steps(deployment, started) or steps
                        line = progress(f"{title} ({time.monotonic() - clock:.1f} s)", steps, started)
                        self.deck.call_from_thread(self.deck.set_progress, line)
        except RegistryError as exc:
            message = f"{title} failed: {exc}"
            self.deck.call_from_thread(self.deck.notify, message, severity="error", timeout=12)
            self.deck.call_from_thread(self.deck.set_progress, "")
        else:  # the last steps (ready, switched) arrive with the answer: show them before clearing
            steps = self._steps(deployment, started) or steps
            line = progress(f"{title}: done in {time.monotonic() - clock:.1f} s", steps, started)
            self.deck.call_from_thread(self.deck.notify, done(result), timeout=6)
            self.deck.call_from_thread(self.deck.show_progress_for, line, LINGER)
        self.deck.call_from_thread(self.deck.action_refresh)

    def act_placed(self, title: str, action: str, name: str, ref: str | None = None) -> None:
        """Request `action` for `name` through the database, in a worker; say what each placed host did
        as it happens, and how it ended."""
        self.deck.notify(f"{title}…", timeout=3)
        self.deck.run_worker(lambda: self._act_placed(title, action, name, ref), thread=True, group="action")

    def _act_placed(self, title: str, action: str, name: str, ref: str | None) -> None:
        clock, backend = time.monotonic(), self.deck.backend
        try:
            asked = backend.request(action, name, ref=ref)

            def changed(found: list[Outcome]) -> None:
                line = placed_progress(f"{title} ({time.monotonic() - clock:.1f} s)", asked.generation, found)
                self.deck.call_from_thread(self.deck.set_progress, line)

            found = backend.wait_placed(asked, changed)
        except RegistryError as exc:
            self.deck.call_from_thread(
                self.deck.notify, f"{title} failed: {exc}", severity="error", timeout=12
            )
            self.deck.call_from_thread(self.deck.set_progress, "")
        else:
            said = placed_progress("", asked.generation, found, final=True)
            line = f"{title}: done in {time.monotonic() - clock:.1f} s{said}"
            failed = [
                o
                for o in found
                if (o.generation == asked.generation and o.outcome == "failed")
                or (o.state == "up" and o.generation < asked.generation)
            ]
            if failed:
                self.deck.call_from_thread(
                    self.deck.notify, f"{title} failed{said}", severity="error", timeout=12
                )
            else:
                self.deck.call_from_thread(self.deck.notify, f"{name}{said}", timeout=6)
            self.deck.call_from_thread(self.deck.show_progress_for, line, LINGER)
        self.deck.call_from_thread(self.deck.action_refresh)

    def _steps(self, deployment: str | None, since: datetime) -> list[tuple[str, datetime]]:
        if deployment is None:
            return []
        try:
            return self.deck.backend.steps(deployment, since=since)
        except RegistryError:  # e.g. the database is busy: the action itself goes on
            return []

    def _confirm(
        self,
        question: str,
        detail: str,
        title: str,
        call: Call,
        done: Report,
        deployment: str,
    ) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.act(title, call, done, deployment)

        self.deck.push_screen(Confirm(question, detail), answered)

    def _confirm_placed(
        self, question: str, detail: str, title: str, action: str, name: str, ref: str | None = None
    ) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.act_placed(title, action, name, ref)

        self.deck.push_screen(Confirm(question, detail), answered)

    def _elsewhere(self, deployment: DeploymentInfo) -> bool:
        """Whether `deployment` is placed on another host (its changes go through the database)."""
        overview = self.deck.overview
        return overview is not None and overview.placed_elsewhere(deployment)

    def _refused(self, what: str) -> bool:
        if self.deck.read_only:
            self.deck.notify(f"read-only: {what} is off", severity="warning")
        return self.deck.read_only

    def _known(self, name: str, doing: str) -> DeploymentInfo | None:
        """The deployment `name`, or None after saying why not (read-only, or no such deployment)."""
        if self._refused(doing):
            return None
        found = self._deployment(name)
        if found is None:
            self.deck.notify(f"no deployment {name!r}", severity="warning")
        return found

    def _deployment(self, name: str) -> DeploymentInfo | None:
        overview = self.deck.overview
        return next((d for d in (overview.deployments if overview else []) if d.name == name), None)


def progress(head: str, steps: list[tuple[str, datetime]], started: datetime) -> str:
    """`deploying iris:2 (1.3 s): deploy_requested → loading 0.1 s → ready 1.1 s`: each step the ledger
    recorded, with when it happened after the action started."""
    if not steps:
        return head
    return f"{head}: " + " → ".join(
        kind if index == 0 else f"{kind} {max(0.0, (at - started).total_seconds()):.1f} s"
        for index, (kind, at) in enumerate(steps)
    )


def _on(deployment: DeploymentInfo) -> str:
    """Where a deployment placed on other hosts is changed: `on b, c: their supervisors make it`."""
    hosts = ", ".join(deployment.placement)
    whose = "its supervisor makes" if len(deployment.placement) == 1 else "their supervisors make"
    return f"on {hosts}: {whose} it (through the registry)"


def placed_progress(head: str, generation: int, found: list[Outcome], final: bool = False) -> str:
    """`rolling back web (0.8 s): b: rolled back to version 1; c: waiting`: each placed host's word on
    request `generation` (a host that is not up makes it when it is back); `final`: the wait is over."""
    said = []
    for o in found:
        if o.generation > generation:
            text = f"superseded by request {o.generation}: {o.message}"
        elif o.generation == generation:
            text = f"failed: {o.message}" if o.outcome == "failed" else o.message or str(o.outcome)
        elif o.state != "up":
            text = f"{o.state}: makes it when it is back"
        else:
            text = f"did not make it within {PLACED_WAIT:g} s" if final else "waiting"
        said.append(f"{o.host}: {text}")
    return f"{head}: " + "; ".join(said) if said else head
