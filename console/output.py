"""How the CLI shows results: rich tables for people, JSON for scripts.

Rich loads on first use: piped tables and lines that `console.plain` can print byte for byte as Rich
would (most of what the read verbs print) go out without importing it.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from console import plain
from console.plain import Grid
from registry import History, ModelInfo, VersionInfo, VersionSummary

if TYPE_CHECKING:
    from console.safe_console import SafeConsole

    #: stdout and stderr consoles (made on first use: see `__getattr__`)
    out: SafeConsole
    err: SafeConsole


def __getattr__(name: str) -> Any:
    """`out` and `err`, the Rich consoles, made on first use."""
    if name not in ("out", "err"):
        raise AttributeError(f"module 'console.output' has no attribute {name!r}")
    from console.safe_console import consoles

    globals()["out"], globals()["err"] = consoles()
    return globals()[name]


def _plainly(text: str, *, stderr: bool = False, soft_wrap: bool = False) -> bool:
    """Write `text` and a newline as Rich would to a pipe, when it is piped and plain; else write
    nothing and return False (the caller prints through Rich)."""
    stream = sys.stderr if stderr else sys.stdout
    if not plain.piped(stream):
        return False
    shown = plain.line_text(text, soft_wrap or stderr)
    if shown is None:
        return False
    stream.write(shown)
    return True


def say(text: str = "", *, soft_wrap: bool = False, style: str | None = None) -> None:
    """`out.print(text)` (no markup, no highlighting), without Rich where `console.plain` can."""
    if not _plainly(text, soft_wrap=soft_wrap):
        _consoles()[0].print(text, soft_wrap=soft_wrap, style=style)


def warn(text: str) -> None:
    """`err.print(text)` (no markup, no highlighting, soft wrap), without Rich where it can."""
    if not _plainly(text, stderr=True):
        _consoles()[1].print(text)


def error(message: str) -> None:
    """`error: MESSAGE` on stderr (the word in bold red on a terminal)."""
    if not _plainly(f"error: {message}", stderr=True):
        from rich.text import Text

        _consoles()[1].print(Text.assemble(("error:", "bold red"), f" {message}"))


def _consoles() -> tuple[SafeConsole, SafeConsole]:
    from console import output

    return output.out, output.err


def print_table(table: Any) -> None:
    """A table (a `Grid` or a Rich renderable) on stdout; piped output has no trailing blanks, so
    scripts can split on spaces."""
    if isinstance(table, Grid):
        text = plain.table_text(table) if plain.piped() else None
        if text is not None:
            sys.stdout.write(text)
            return
        table = table.rich()
    out = _consoles()[0]
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


def models_table(models: list[ModelInfo]) -> Grid:
    table = grid("MODEL", "VERSIONS", "LATEST", "ALIASES", "UPDATED", "DESCRIPTION")
    for m in models:
        aliases = ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items()))
        table.add_row(
            m.name, str(m.versions), str(m.latest_version or "-"), aliases, when(m.updated_at), m.description
        )
    return table


def versions_table(versions: list[VersionSummary]) -> Grid:
    table = grid("VERSION", "ALIASES", "ESTIMATOR", "METRICS", "CREATED", "BY", "ARCHIVED")
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
    if not _plainly(v.ref + ("  (archived)" if v.archived else "")):
        from rich.text import Text

        _consoles()[0].print(Text.assemble((v.ref, "bold"), ("  (archived)" if v.archived else "", "dim")))
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
        if not _plainly(f"  {key:<14} {value}", soft_wrap=True):
            from rich.text import Text

            _consoles()[0].print(Text.assemble((f"  {key:<14} ", "dim"), value), soft_wrap=True)
    table = grid("INPUT", "DTYPE", "KIND", "NULLABLE")
    for c in v.signature.get("columns", []):
        table.add_row(c["name"], c["dtype"], c["kind"], "yes" if c["nullable"] else "no")
    print_table(table)


def grid(*columns: str) -> Grid:
    """A borderless table whose cells never wrap (long values end in an ellipsis)."""
    return Grid(columns)


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
    table = grid("WHEN", "EVENT", "VERSION", "WHERE", "WHO", "WHY")
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
    say()
    say(f"{history.model} {label}", style="bold")
    say(f"  versions  {', '.join(map(str, state.versions)) or 'none'}")
    say(f"  aliases   {aliases}")
    say(f"  serving   {serving}")
