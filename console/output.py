"""How the CLI shows results: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from console.safe_text import safe_segments
from registry import History, ModelInfo, VersionInfo, VersionSummary


class SafeConsole(Console):
    """A Console that never writes a control character it did not generate itself: every segment
    it renders (tables, Text, plain strings, error lines) passes through `safe_text`."""

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        return safe_segments(super().render(renderable, options))


# markup=False everywhere: names, tags, reasons and paths are user text and must print verbatim
# (less their control characters: see console/safe_text.py).
# Piped output is not squeezed into 80 columns, so grep and awk see one row per line.
out = SafeConsole(
    highlight=False,
    markup=False,
    width=None if sys.stdout.isatty() else max(200, shutil.get_terminal_size().columns),
)
err = SafeConsole(stderr=True, highlight=False, markup=False, soft_wrap=True)


def print_table(table: Table) -> None:
    """A table on stdout; piped output has no trailing blanks, so scripts can split on spaces."""
    if out.is_terminal:
        out.print(table)
        return
    with out.capture() as captured:
        out.print(table)
    out.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def print_json(data: Any) -> None:
    """Compact-but-readable JSON on stdout, nothing else."""
    print(json.dumps(data, indent=2, sort_keys=False, default=str))


def when(moment: datetime | None) -> str:
    """A stored UTC time shown in the local time zone, to the second."""
    if moment is None:
        return "-"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def models_table(models: list[ModelInfo]) -> Table:
    table = _table("MODEL", "VERSIONS", "LATEST", "ALIASES", "UPDATED", "DESCRIPTION")
    for m in models:
        aliases = ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items()))
        table.add_row(
            m.name, str(m.versions), str(m.latest_version or "-"), aliases, when(m.updated_at), m.description
        )
    return table


def versions_table(versions: list[VersionSummary]) -> Table:
    table = _table("VERSION", "ALIASES", "ESTIMATOR", "METRICS", "CREATED", "BY", "ARCHIVED")
    for v in versions:
        metrics = ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items()))
        table.add_row(
            str(v.version),
            ", ".join(v.aliases),
            v.estimator_class.rsplit(".", 1)[-1],
            metrics,
            when(v.created_at),
            v.created_by,
            "yes" if v.archived else "",
        )
    return table


def show_version(v: VersionInfo) -> None:
    out.print(Text.assemble((v.ref, "bold"), ("  (archived)" if v.archived else "", "dim")))
    rows = [
        ("aliases", ", ".join(v.aliases) or "-"),
        ("estimator", v.estimator_class),
        ("params", _short(", ".join(f"{k}={val}" for k, val in v.params.items())) or "-"),
        ("output", _output_text(v.output)),
        ("metrics", ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items())) or "-"),
        ("tags", ", ".join(f"{k}={val}" for k, val in sorted(v.tags.items())) or "-"),
        ("description", v.description or "-"),
        ("created", f"{when(v.created_at)} by {v.created_by}"),
        ("artifact", f"sha256:{v.artifact_sha256} ({v.artifact_size:,} bytes, skops)"),
        ("trusted types", ", ".join(v.trusted_types) or "(skops defaults only)"),
        (
            "trained with",
            f"python {v.python_version}, scikit-learn {v.sklearn_version}, numpy {v.numpy_version}",
        ),
        ("reference", f"{v.reference_rows:,} rows" if v.reference_sha256 else "none"),
        ("source", v.source or "-"),
    ]
    if v.parent_version:
        rows.append(("parent", f"{v.name}:{v.parent_version}"))
    if v.origin.get("imported_from"):
        src = v.origin["imported_from"]
        rows.append(("imported from", f"{src['model']}:{src['version']} on {src.get('host')}"))
    for key, value in rows:
        out.print(Text.assemble((f"  {key:<14} ", "dim"), value), soft_wrap=True)
    table = _table("INPUT", "DTYPE", "KIND", "NULLABLE")
    for c in v.signature.get("columns", []):
        table.add_row(c["name"], c["dtype"], c["kind"], "yes" if c["nullable"] else "no")
    print_table(table)


def _table(*columns: str) -> Table:
    """A borderless table whose cells never wrap (long values end in an ellipsis)."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    return table


def _short(text: str, limit: int = 240) -> str:
    """`text` on one line, cut at `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _output_text(output: dict[str, Any]) -> str:
    if output.get("kind") == "classification":
        classes = ", ".join(str(c) for c in output.get("classes", []))
        return f"classification: {classes}" + (" (with probabilities)" if output.get("predict_proba") else "")
    return output.get("kind", "?")


def show_history(history: History, at_given: bool) -> None:
    table = _table("WHEN", "EVENT", "VERSION", "WHERE", "WHO", "WHY")
    for e in history.events:
        change = (
            f"{e.from_version or '-'} → {e.to_version}"
            if e.from_version and e.to_version
            else str(e.to_version or e.from_version or "-")
        )
        where = f"@{e.alias}" if e.alias else (e.deployment or "")
        table.add_row(when(e.at), e.kind, change, where, e.actor, e.reason)
    print_table(table)
    state = history.state
    label = f"at {when(state.at)}" if at_given else "now"
    aliases = ", ".join(f"{a}→{v}" for a, v in state.aliases.items()) or "none"
    serving = ", ".join(f"{d}: version {v}" for d, v in state.serving.items()) or "nothing"
    out.print()
    out.print(f"{history.model} {label}", style="bold")
    out.print(f"  versions  {', '.join(map(str, state.versions)) or 'none'}")
    out.print(f"  aliases   {aliases}")
    out.print(f"  serving   {serving}")
