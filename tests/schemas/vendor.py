"""Rewrite the vendored schemas from their upstream files (see ORIGIN.md); run by hand, never by tests.

    python tests/schemas/vendor.py UPSTREAM_CRD_YAML UPSTREAM_K8S_API_V1_JSON

Each output is a subset of its upstream file, copied as it is (descriptions included), only re-serialized
as sorted, compact JSON: the InferenceService CRD's v1beta1 `openAPIV3Schema`, and the Kubernetes core/v1
OpenAPI v3 schemas that a Container and an ObjectMeta reach through `$ref`. The tests, not this script,
turn them into strict JSON Schema (tests/test_kserve_export.py, `strict`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
ROOTS = ("io.k8s.api.core.v1.Container", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                found.add(value.rsplit("/", 1)[-1])
            else:
                _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def reachable(schemas: dict[str, Any], roots: tuple[str, ...]) -> dict[str, Any]:
    """The schemas `roots` reach through `$ref`, themselves included."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            found: set[str] = set()
            _refs(schemas[name], found)
            todo.extend(found - seen)
    return {name: schemas[name] for name in sorted(seen)}


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")


def main(crd_path: str, k8s_path: str) -> None:
    crd = yaml.safe_load(Path(crd_path).read_text())
    (v1beta1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    _write(HERE / "kserve-inferenceservice-v1beta1.json", v1beta1["schema"]["openAPIV3Schema"])
    k8s = json.loads(Path(k8s_path).read_text())
    _write(
        HERE / "k8s-core-v1-container-objectmeta.json",
        {"components": {"schemas": reachable(k8s["components"]["schemas"], ROOTS)}},
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
