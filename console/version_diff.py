"""Side-by-side differences of two model versions: params, metrics, signature, tags, environment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry.info import VersionInfo


@dataclass(frozen=True)
class DiffRow:
    """One compared field: its section, name, both values as text, and whether they differ."""

    section: str
    field: str
    left: str
    right: str

    @property
    def differs(self) -> bool:
        return self.left != self.right


def diff_versions(
    left: VersionInfo, right: VersionInfo, live: dict[int, dict[str, Any] | None] | None = None
) -> list[DiffRow]:
    """Every field of both versions, section by section; a field one version lacks shows as `-`.
    `live` (version -> realised performance, `registry.monitoring.performance`) adds a section."""
    sections: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "version": (_identity(left), _identity(right)),
        "params": (left.params, right.params),
        "metrics": (left.metrics, right.metrics),
        "signature": (_signature(left), _signature(right)),
        "tags": (left.tags, right.tags),
        "environment": (_environment(left), _environment(right)),
    }
    if live:  # only where predictions are stored
        sections["live performance"] = (
            _live(live.get(left.version)),
            _live(live.get(right.version)),
        )
    rows = []
    for section, (a, b) in sections.items():
        for name in sorted(a.keys() | b.keys(), key=lambda k: (k not in a, k not in b, k)):
            rows.append(DiffRow(section, name, _text(a.get(name, "-")), _text(b.get(name, "-"))))
    return rows


def _identity(v: VersionInfo) -> dict[str, Any]:
    return {
        "estimator": v.estimator_class.rsplit(".", 1)[-1],
        "created": v.created_at.strftime("%Y-%m-%d %H:%M"),
        "by": v.created_by,
        "aliases": " ".join(sorted(v.aliases)) or "-",
        "parent": v.parent_version or "-",
        "artifact": v.artifact_sha256[:12],
        "reference rows": v.reference_rows,
    }


def _signature(v: VersionInfo) -> dict[str, Any]:
    columns = {c["name"]: f"{c['dtype']}{'?' if c.get('nullable') else ''}" for c in v.signature["columns"]}
    output = v.output.get("kind", "-")
    if v.output.get("classes") is not None:
        output += f" {v.output['classes']}"
    return {**columns, "→ output": output}


_LIVE = ("accuracy", "f1", "log_loss", "mae", "rmse")


def _live(figures: dict[str, Any] | None) -> dict[str, Any]:
    """A version's realised performance over the last day, as diff fields (`-` where absent)."""
    if not figures:
        return {"predictions": 0}
    fields: dict[str, Any] = {name.replace("_", " "): figures[name] for name in _LIVE if name in figures}
    fields["predictions"] = figures["predicted"]
    fields["labelled"] = f"{figures['labelled']} ({figures['coverage']:.0%})"
    if figures.get("delay") is not None:
        fields["label delay (s)"] = round(figures["delay"], 1)
    return fields


def _environment(v: VersionInfo) -> dict[str, Any]:
    return {"python": v.python_version, "scikit-learn": v.sklearn_version, "numpy": v.numpy_version}


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
