"""`modeldeck export kserve REF`: a directory that takes one version to KServe unchanged.

It holds the version's archive (`Registry.export`: every artifact sha256-checked), a Dockerfile that
imports it and runs `modeldeck serve`, the InferenceService and an example request
(`console.kserve_recipe` builds them). What the manifest needs is gathered here: the version's memory
measured by this registry's monitoring (its rollups), and a running canary's share from the supervisor,
if one runs (none is started).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from console.kserve_recipe import (
    DOCKERFILE,
    MANIFEST,
    README,
    REQUEST,
    ExportError,
    Memory,
    canary_share,
    check_name,
    default_name,
    dockerfile,
    example_request,
    image_ref,
    inference_service,
    manifest_yaml,
    memory_from,
    quantity,
    readme,
)
from registry.errors import RegistryError

if TYPE_CHECKING:
    from registry.core import Registry
    from registry.info import VersionInfo
    from registry.serving.protocol import DeploymentStatus

_ROLLUPS = sa.table(
    "metric_rollup", sa.column("deployment"), sa.column("model"), sa.column("version"), sa.column("rss")
)


def first_reference_row(reg: Registry, info: VersionInfo) -> dict[str, Any] | None:
    """The reference sample's first row (missing values left out), or None without a sample."""
    sample = reg.reference(info.ref)
    if sample is None or not sample.rows:
        return None
    return {name: values[0].item() for name, values in sample.columns.items() if not sample.missing[name][0]}


def measured_memory(reg: Registry, info: VersionInfo, deployment: str | None) -> Memory:
    """The version's memory from the rollups of its deployments here (all, or `deployment`'s)."""
    from registry.deployments import list_deployments

    workers = {d.name: d.workers for d in list_deployments(reg)}
    query = sa.select(_ROLLUPS.c.deployment, _ROLLUPS.c.rss).where(
        _ROLLUPS.c.model == info.name, _ROLLUPS.c.version == info.version, _ROLLUPS.c.rss.is_not(None)
    )
    if deployment is not None:
        query = query.where(_ROLLUPS.c.deployment == deployment)
    with reg.db.connect() as conn:
        rows = conn.execute(query).all()
    # A deployment removed since: its worker count is unknown, so count one (more memory, not less).
    return memory_from((float(rss), workers.get(name, 1)) for name, rss in rows)


def running_deployments(
    reg: Registry, model: str, deployment: str | None
) -> tuple[list[DeploymentStatus], list[str]]:
    """This model's deployments as a running supervisor reports them (none is started), and notes."""
    from registry.serving.client import SupervisorClient

    with SupervisorClient(reg.settings.home) as client:
        if not client.running():
            return [], []
        try:
            status = client.status(timeout=10)
        except RegistryError as exc:
            return [], [f"the supervisor did not say whether a canary runs ({exc}); none is in the manifest"]
    return [d for d in status.deployments if d.model == model and deployment in (None, d.name)], []


def _checked_deployment(reg: Registry, info: VersionInfo, deployment: str) -> None:
    from registry.deployments import list_deployments

    known = {d.name: d.model for d in list_deployments(reg)}
    if deployment not in known:
        raise ExportError(f"no deployment {deployment!r} in this registry")
    if known[deployment] != info.name:
        raise ExportError(f"deployment {deployment!r} serves {known[deployment]}, not {info.name}")


def _release() -> str:
    """The running modeldeck's version: the one the image installs."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modeldeck")
    except PackageNotFoundError:
        raise ExportError("modeldeck is not installed (no version to put in the image): install it") from None


def export_kserve(
    reg: Registry,
    ref: str,
    out: Path | None = None,
    *,
    name: str | None = None,
    deployment: str | None = None,
    image: str | None = None,
    wheel: Path | None = None,
) -> dict[str, Any]:
    """Write the archive, Dockerfile, InferenceService, README and example request of `ref` into `out`
    (default `./<model>-v<version>-kserve`, created); what was written and why, as JSON-ready data.
    Files of an earlier export there are replaced, others left alone."""
    from registry.artifacts import types_needing_trust

    info = reg.get(ref)
    name = check_name(name) if name is not None else default_name(info.name)
    if deployment is not None:
        _checked_deployment(reg, info, deployment)
    if wheel is not None and not (wheel.is_file() and re.fullmatch(r"modeldeck-[^-]+-.+\.whl", wheel.name)):
        raise ExportError(f"--wheel {wheel}: not a modeldeck wheel file (modeldeck-VERSION-...whl)")
    image = image if image is not None else f"{name}:v{info.version}"
    if not image or any(c.isspace() for c in image):
        raise ExportError(f"bad --image {image!r}")
    out = out if out is not None else Path(f"{info.name}-v{info.version}-kserve")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    release = _release()
    memory = measured_memory(reg, info, deployment)
    statuses, notes = running_deployments(reg, info.name, deployment)
    percent, rollout_notes = canary_share(info, statuses)
    notes += rollout_notes
    if percent is not None:
        notes.append(f"canaryTrafficPercent {percent}: apply the serving version's export as {name} first")
    if wheel is None:
        notes.append(f"the image installs modeldeck=={release} from your package index (--wheel FILE: yours)")
    for type_name in types_needing_trust(info.trusted_types):
        notes.append(f"the image must be able to import {type_name}: add its package to the pip install")
    with tempfile.TemporaryDirectory(prefix="modeldeck-kserve-") as staging:
        # Made aside first: an artifact refused (sha256) leaves `out` as it was.
        archive = reg.export(info.ref, Path(staging)).name
        sent = [archive, *([wheel.name] if wheel else [])]
        manifest = inference_service(info, name=name, image=image, memory=memory, canary_percent=percent)
        files = {
            DOCKERFILE: dockerfile(info, archive, release=release, wheel=wheel.name if wheel else None),
            MANIFEST: manifest_yaml(manifest, info, release),
            README: readme(info, name=name, image=image, notes=notes),
            REQUEST: json.dumps(example_request(info, first_reference_row(reg, info)), indent=2) + "\n",
            # The build context is the archive (and wheel) alone, whatever else the directory holds.
            ".dockerignore": "".join(f"{line}\n" for line in ["*", *(f"!{file}" for file in sent)]),
        }
        for file, text in files.items():
            (Path(staging) / file).write_text(text)
        if wheel is not None:
            shutil.copyfile(wheel, Path(staging) / wheel.name)
        out.mkdir(parents=True, exist_ok=True)
        written = [*files, *sent]
        for file in written:
            shutil.move(Path(staging) / file, out / file)
    return {
        "ref": info.ref,
        "dir": str(out),
        "files": sorted(written),
        "name": name,
        "image": image,
        "serves": image_ref(info),
        "memory": {
            "request": quantity(memory.request),
            "limit": quantity(memory.limit),
            "peak_bytes": memory.peak,
            "windows": memory.windows,
            "source": memory.source,
        },
        "canary_traffic_percent": percent,
        "notes": notes,
    }
