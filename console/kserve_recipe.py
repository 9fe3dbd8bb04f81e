"""What `modeldeck export kserve` writes, as plain functions: the InferenceService (a dict), the Dockerfile,
the README and an example request, for one version. `console.kserve_export` gathers their inputs.

The container runs `modeldeck serve` on the version imported from its archive, so on KServe it answers
the same protocols (Open Inference Protocol v2, MLflow's scoring) with the same metrics as here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from registry.errors import RegistryError

if TYPE_CHECKING:
    from registry.info import VersionInfo
    from registry.serving.protocol import DeploymentStatus

PORT = 8080
BASE_IMAGE = "python:3.11-slim"
#: MODELDECK_HOME inside the image, and where the archive is copied to.
IMAGE_HOME = "/var/lib/modeldeck"
IMAGE_ARCHIVES = "/opt/modeldeck"
#: The image's user (numeric, so that `runAsNonRoot` can check it).
UID = 10001
READY_PATH, LIVE_PATH, METRICS_PATH = "/v2/health/ready", "/v2/health/live", "/metrics"
MANIFEST, DOCKERFILE, README, REQUEST = "inferenceservice.yaml", "Dockerfile", "README.txt", "request.json"
MIB = 1024 * 1024
#: Requests get this much over the highest RSS measured per worker, limits this much.
REQUEST_HEADROOM, LIMIT_HEADROOM = 1.25, 2.0
#: Without a measurement (the version never served here): requests and limits of memory.
DEFAULT_REQUEST, DEFAULT_LIMIT = 512 * MIB, 1024 * MIB
#: KServe's names are DNS-1035 labels; its revisions add "-predictor-00001" to them.
NAME_MAX = 45
_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


class ExportError(RegistryError):
    """An export that cannot be written as asked (the message says why)."""


@dataclass(frozen=True)
class Memory:
    """Memory request and limit of the container, in bytes, and what they come from."""

    request: int
    limit: int
    #: The highest RSS of one worker measured here (bytes), over `windows` rollup windows; None: never.
    peak: float | None = None
    windows: int = 0

    @property
    def source(self) -> str:
        if self.peak is None:
            return "default: never measured here"
        return f"measured: peak {self.peak / MIB:.0f} MiB per worker over {self.windows} windows"


def quantity(size: int) -> str:
    """A Kubernetes quantity for `size` bytes, rounded up to whole 16 MiB."""
    return f"{math.ceil(size / (16 * MIB)) * 16}Mi"


def memory_from(measured: Iterable[tuple[float, int]]) -> Memory:
    """Request and limit from `(rss of a deployment's workers, their number)` per rollup window: the
    highest RSS of one worker, with headroom; the documented defaults when nothing was measured."""
    per_worker = [rss / max(workers, 1) for rss, workers in measured if rss]
    if not per_worker:
        return Memory(DEFAULT_REQUEST, DEFAULT_LIMIT)
    peak = max(per_worker)
    return Memory(
        math.ceil(peak * REQUEST_HEADROOM / (16 * MIB)) * 16 * MIB,
        math.ceil(peak * LIMIT_HEADROOM / (16 * MIB)) * 16 * MIB,
        peak,
        len(per_worker),
    )


def default_name(model: str) -> str:
    """An InferenceService name from a model name: lower case, runs of other characters as '-'."""
    name = re.sub(r"[^a-z0-9]+", "-", model.lower())
    name = re.sub(r"^[^a-z]+", "", name)[:NAME_MAX].rstrip("-")
    return name or "model"


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or len(name) > NAME_MAX:
        raise ExportError(
            f"bad --name {name!r}: KServe needs lower-case letters, digits and '-', starting with a letter "
            f"and ending with a letter or digit, at most {NAME_MAX} characters"
        )
    return name


def canary_share(info: VersionInfo, deployments: Sequence[DeploymentStatus]) -> tuple[int | None, list[str]]:
    """The share in percent a running canary of this version takes (None: no canary of it runs), and
    notes on rollouts this manifest does not carry. `deployments`: the supervisor's, of this model."""
    from registry.serving.protocol import RolloutStatus

    shares: dict[str, int] = {}
    notes = []
    for deployment in deployments:
        rollout = deployment.rollout
        if not isinstance(rollout, RolloutStatus) or rollout.stage == "aborting":
            continue
        if rollout.version != info.version:
            notes.append(
                f"deployment {deployment.name} runs a {rollout.mode} of {info.name}:{rollout.version}; "
                f"export that version for its share"
            )
        elif rollout.mode == "canary":
            shares[deployment.name] = min(100, max(0, round(rollout.weight)))
        else:
            notes.append(
                f"deployment {deployment.name} runs {info.ref} as a {rollout.mode}: KServe has no "
                "shadow traffic, so this manifest carries no split"
            )
    if len(set(shares.values())) > 1:
        raise ExportError(
            f"several deployments run a canary of {info.ref} ({', '.join(sorted(shares))}): "
            "choose one with --deployment"
        )
    return (next(iter(shares.values())) if shares else None), notes


def serve_command(ref: str) -> list[str]:
    """The container's command: `modeldeck serve` on all interfaces without the bearer token (see the
    README: KServe's ingress authenticates, and Prometheus scrapes /metrics with no token)."""
    return ["modeldeck", "serve", ref, "--host", "0.0.0.0", "--port", str(PORT), "--no-auth"]


def image_ref(info: VersionInfo) -> str:
    """The version's reference in the image's registry: the same as here (imported keeping its number)."""
    return info.ref


def inference_service(
    info: VersionInfo, *, name: str, image: str, memory: Memory, canary_percent: int | None = None
) -> dict[str, Any]:
    """The InferenceService (serving.kserve.io/v1beta1) running `image` as a custom predictor."""

    def probe(path: str, period: int, failures: int, delay: int = 0) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": PORT},
            "initialDelaySeconds": delay,
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": failures,
        }

    predictor: dict[str, Any] = {}
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    predictor["annotations"] = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": METRICS_PATH,
        # KServe's own scraping set-up would point prometheus.io/port at its queue-proxy: keep ours.
        "serving.kserve.io/enable-prometheus-scraping": "false",
        "prometheus.kserve.io/port": str(PORT),
        "prometheus.kserve.io/path": METRICS_PATH,
    }
    predictor["containers"] = [
        {
            "name": "kserve-container",
            "image": image,
            "ports": [{"name": "http1", "containerPort": PORT, "protocol": "TCP"}],
            # How KServe learns a custom container's protocol (there is no protocolVersion field here).
            "env": [{"name": "PROTOCOL", "value": "v2"}],
            "readinessProbe": probe(READY_PATH, period=5, failures=3),
            "livenessProbe": probe(LIVE_PATH, period=10, failures=6, delay=10),
            "resources": {
                "requests": {"memory": quantity(memory.request)},
                "limits": {"memory": quantity(memory.limit)},
            },
            "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "allowPrivilegeEscalation": False},
        }
    ]
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "annotations": {
                "modeldeck/ref": info.ref,
                "modeldeck/artifact-sha256": info.artifact_sha256,
                "modeldeck/memory": memory.source,
            },
        },
        "spec": {"predictor": predictor},
    }


def manifest_yaml(manifest: dict[str, Any], info: VersionInfo, release: str) -> str:
    import yaml

    header = f"# {info.ref} on KServe, written by modeldeck {release} (`modeldeck export kserve`).\n"
    return header + yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False)


def dockerfile(info: VersionInfo, archive: str, *, release: str, wheel: str | None = None) -> str:
    """A Dockerfile that installs modeldeck (`wheel`, else `modeldeck==release` from the package index)
    and the version's scikit-learn, imports `archive` and serves it on PORT."""
    from registry.artifacts import types_needing_trust

    packages = [f"/tmp/{wheel}" if wheel else f"modeldeck=={release}"]
    if re.fullmatch(r"\d+(\.\d+)+", info.sklearn_version):
        packages.append(f"scikit-learn=={info.sklearn_version}")  # as the model was saved with
    install = " ".join(f'"{p}"' for p in packages)
    trust = [arg for t in types_needing_trust(info.trusted_types) for arg in ("--trust-type", t)]
    lines = [
        f"# {info.ref} (artifact sha256 {info.artifact_sha256}) served by `modeldeck serve` on port {PORT}.",
        f"# Written by modeldeck {release} (`modeldeck export kserve`); build with: docker build -t IMAGE .",
        f"FROM {BASE_IMAGE}",
        "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \\",
        "    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \\",
        f"    MODELDECK_HOME={IMAGE_HOME}",
    ]
    if wheel:
        lines.append(f"COPY {wheel} /tmp/{wheel}")
    lines += [
        f"RUN pip install {install}" + (f" && rm /tmp/{wheel}" if wheel else ""),
        f"RUN useradd --system --uid {UID} --no-create-home --home-dir {IMAGE_HOME} modeldeck \\",
        f"    && install -d -o {UID} -g {UID} -m 0700 {IMAGE_HOME}",
        f"COPY {archive} {IMAGE_ARCHIVES}/{archive}",
        f"USER {UID}",
        "# Checks every sha256 again; the version keeps its number, so answers and metrics name it as here.",
        f"RUN {json.dumps(['modeldeck', 'import', f'{IMAGE_ARCHIVES}/{archive}', '--keep-version', *trust])}",
        f"EXPOSE {PORT}",
        f"CMD {json.dumps(serve_command(image_ref(info)))}",
    ]
    return "\n".join(lines) + "\n"


def example_request(info: VersionInfo, row: dict[str, Any] | None = None) -> dict[str, Any]:
    """An OIP v2 infer request of one row, a tensor per column as model metadata declares them; the
    values from `row` (the reference sample's first), else zeros, false or empty strings."""
    from registry.serving.oip_types import input_datatype

    blank = {"BYTES": "", "BOOL": False, "INT64": 0}
    inputs = []
    for column in info.signature.get("columns", []):
        datatype = input_datatype(column)
        value = (row or {}).get(column["name"], blank.get(datatype, 0.0))
        inputs.append({"name": column["name"], "shape": [1], "datatype": datatype, "data": [value]})
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def readme(info: VersionInfo, *, name: str, image: str, notes: Sequence[str]) -> str:
    """What the directory holds and the commands that take it to a cluster."""
    lines = [
        f"{info.ref} for KServe, written by `modeldeck export kserve`.",
        "",
        *(
            f"  {file:<22} {what}"
            for file, what in [
                (DOCKERFILE, f"installs modeldeck and the archive; runs `modeldeck serve` on port {PORT}"),
                (MANIFEST, f"the InferenceService (OIP v2; probes {READY_PATH}, {LIVE_PATH})"),
                (REQUEST, "an OIP v2 infer request of one row"),
            ]
        ),
        "",
        "Build and push the image, apply the manifest, ask for a prediction:",
        "",
        f"  docker build -t {image} . && docker push {image}",
        f"  kubectl apply -f {MANIFEST}",
        f"  URL=$(kubectl get inferenceservice {name} -o jsonpath='{{.status.url}}')",
        f"  curl -H 'Content-Type: application/json' -d @{REQUEST} $URL/v2/models/{info.name}/infer",
        "",
        "The image serves without the bearer token (--no-auth): KServe's ingress is where callers are",
        "authenticated, and its probes and Prometheus carry no token. Inside the image the version keeps",
        f"its number ({image_ref(info)}), so its answers and metrics name the same version as here.",
    ]
    if notes:
        lines += ["", "Notes:", *(f"  - {note}" for note in notes)]
    return "\n".join(lines) + "\n"
