"""Versions of one model: who made each, when, with what, and which aliases point at it."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import DataTable, Static

from console.actions import bindings
from console.backend import Overview
from console.output import when
from console.screens.base import OverviewScreen
from console.widgets.ask import Ask
from console.widgets.tables import FitTable, refresh_rows
from registry.errors import RegistryError
from registry.info import VersionInfo, VersionSummary


class VersionsScreen(OverviewScreen[list[VersionSummary]]):
    """`d` deploys the selected version, `a` sets an alias, `space` marks one and `c` compares two."""

    AUTO_FOCUS = "#versions"
    BINDINGS = bindings("versions")
    COLUMNS = ("VERSION", "ALIASES", "ESTIMATOR", "METRICS", "CREATED", "BY", "TAGS", "SERVING")
    DEFAULT_CSS = """
    VersionsScreen #versions { height: 1fr; }
    VersionsScreen #details {
        height: auto; max-height: 8; padding: 0 1; border-top: solid $primary;
        text-wrap: nowrap; text-overflow: ellipsis;  /* one line each: a long line never pushes one out */
    }
    """

    def __init__(self, model: str) -> None:
        super().__init__(name="versions")
        self.model = model
        self.summaries: list[VersionSummary] = []
        self.marked: int | None = None

    def body(self) -> ComposeResult:
        yield Static(f" {self.model}: versions", id="title", markup=False)
        table: DataTable[str] = FitTable(
            drop=("TAGS", "BY", "CREATED"), cursor_type="row", zebra_stripes=True, id="versions"
        )
        table.add_columns(*self.COLUMNS)
        yield table
        yield Static("", id="details", markup=False)

    def fetch(self, request: None) -> list[VersionSummary]:
        return self.deck.backend.versions(self.model)

    def take(self, extra: list[VersionSummary], request: None) -> None:
        self.summaries = extra

    def show(self, overview: Overview) -> None:
        serving: dict[int, list[str]] = {}
        for d in overview.deployed(self.model):  # a deployment whose alert fires is marked "!"
            serving.setdefault(d.version, []).append(f"! {d.name}" if overview.firing(d.name) else d.name)
        rows = []
        for v in sorted(self.summaries, key=lambda s: -s.version):
            metrics = " ".join(f"{k}={x:.3g}" for k, x in sorted(v.metrics.items())[:3])
            tags = " ".join(f"{k}={x}" for k, x in sorted(v.tags.items()))
            cells = [
                f"{v.version}{' *' if v.version == self.marked else ''}",
                " ".join(v.aliases) or "-",
                v.estimator_class.rsplit(".", 1)[-1],
                metrics or "-",
                when(v.created_at),
                v.created_by,
                tags or "-",
                " ".join(serving.get(v.version, [])),
            ]
            rows.append((str(v.version), cells))
        refresh_rows(self.query_one("#versions", FitTable), rows)

    def selected(self) -> int | None:
        table = self.query_one("#versions", DataTable)
        if table.row_count == 0:
            return None
        return int(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))

    @on(DataTable.RowHighlighted, "#versions")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self._details(int(str(event.row_key.value)))

    @dataclass
    class Details(Message):
        """The details of one version, read in a worker thread."""

        version: int
        text: str

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, VersionsScreen.Details)

    @work(thread=True, group="details", exclusive=True, exit_on_error=False)
    def _details(self, version: int) -> None:
        try:
            info = self.deck.backend.version(f"{self.model}:{version}")
        except RegistryError as exc:
            text = f"{self.model}:{version}: {exc}"
        else:
            text = details(info)
        self.post_message(self.Details(version, text))

    @on(Details)
    def _show_details(self, message: Details) -> None:
        if message.version == self.selected():  # else the cursor moved on meanwhile
            self.query_one("#details", Static).update(message.text)

    def action_deploy(self) -> None:
        version = self.selected()
        if version is not None:
            self.deck.operations.deploy(f"{self.model}:{version}")

    def action_canary(self) -> None:
        version = self.selected()
        if version is not None:
            self.deck.operations.rollout(f"{self.model}:{version}", "canary")

    def action_shadow(self) -> None:
        version = self.selected()
        if version is not None:
            self.deck.operations.rollout(f"{self.model}:{version}", "shadow")

    def action_alias(self) -> None:
        version = self.selected()
        if version is None:
            return
        ref = f"{self.model}:{version}"

        def answered(alias: str | None) -> None:
            if alias:
                self.deck.operations.set_alias(ref, alias)

        self.app.push_screen(Ask(f"Alias to point at {ref} (moves it if it exists):", "champion"), answered)

    def action_mark(self) -> None:
        version = self.selected()
        self.marked = None if version == self.marked else version
        if self.deck.overview is not None:
            self.show(self.deck.overview)

    def action_compare(self) -> None:
        """Compare the marked version (or else the next older one) with the selected one."""
        from console.screens.diff import DiffScreen

        version = self.selected()
        if version is None:
            return
        other = self.marked
        if other is None or other == version:
            older = [s.version for s in self.summaries if s.version < version]
            other = max(older) if older else None
        if other is None:
            self.notify("mark another version with space first", severity="warning")
            return
        self.app.push_screen(DiffScreen(self.model, min(other, version), max(other, version)))


def details(v: VersionInfo) -> str:
    """The selected version in a few lines: signature, output, environment, artifact, lineage."""
    columns = ", ".join(f"{c['name']}:{c['dtype']}" for c in v.signature["columns"])
    lines = [
        f"{v.ref}  {v.estimator_class}  by {v.created_by}  {v.description}".rstrip(),
        "tags: " + (" ".join(f"{k}={x}" for k, x in sorted(v.tags.items())) or "-"),
        f"signature ({len(v.signature['columns'])}): {columns}",
        f"output: {v.output.get('kind', '-')}"
        + (f" classes {v.output['classes']}" if v.output.get("classes") is not None else ""),
        f"scikit-learn {v.sklearn_version} · python {v.python_version} · numpy {v.numpy_version}",
        f"artifact sha256 {v.artifact_sha256[:16]} ({v.artifact_size:,} bytes) · reference rows"
        f" {v.reference_rows} · parent {v.parent_version or '-'}",
    ]
    return "\n".join(lines)
