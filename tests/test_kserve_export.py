"""`modeldeck export kserve REF`: the InferenceService checked against KServe's CRD and Kubernetes' own
schemas (vendored in tests/schemas, see ORIGIN.md there), the container recipe followed step by step
without Docker, and a served version answering the same wire format from the exported archive."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from helpers import free_port, wait_until
from jsonschema import Draft4Validator
from typer.testing import CliRunner

from console.cli import app
from console.kserve_recipe import (
    LIVE_PATH,
    METRICS_PATH,
    PORT,
    READY_PATH,
    ExportError,
    canary_share,
    inference_service,
    memory_from,
    serve_command,
)
from registry.serving.protocol import DeploymentState, DeploymentStatus, RolloutStatus

SCHEMAS = Path(__file__).parent / "schemas"
MIB = 1024 * 1024
runner = CliRunner()
#: The installed `modeldeck` command (the image runs it by that name).
MODELDECK = shutil.which("modeldeck", path=str(Path(sys.executable).parent)) or "modeldeck"


# ---------------------------------------------------------------------- the schemas
def strict(node: Any) -> Any:
    """An OpenAPI v3 schema as the API server applies it with strict field validation (kubectl's
    default), in JSON Schema draft 4: an object that lists its properties refuses others (unless it
    preserves unknown fields), `x-kubernetes-int-or-string` is an integer or a string, `nullable`
    admits null."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions", "schemas"):
            out[key] = {name: strict(schema) for name, schema in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = strict(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [strict(schema) for schema in value]
        elif key == "components":
            out[key] = {"schemas": {name: strict(s) for name, s in value["schemas"].items()}}
        else:
            out[key] = value
    if out.pop("x-kubernetes-int-or-string", False):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    preserves = out.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in out and "additionalProperties" not in out and not preserves:
        out["additionalProperties"] = False
    return out


@cache
def kserve_validator() -> Draft4Validator:
    """KServe's InferenceService v1beta1 (its CRD's openAPIV3Schema)."""
    return Draft4Validator(strict(json.loads((SCHEMAS / "kserve-inferenceservice-v1beta1.json").read_text())))


@cache
def kubernetes_validator(definition: str) -> Draft4Validator:
    """Kubernetes' own core/v1 (or meta/v1) `definition`, with the schemas it refers to."""
    document = json.loads((SCHEMAS / "k8s-core-v1-container-objectmeta.json").read_text())
    return Draft4Validator({**strict(document), "allOf": [{"$ref": f"#/components/schemas/{definition}"}]})


def schema_errors(manifest: dict[str, Any]) -> list[str]:
    """Every way `manifest` breaks the InferenceService schema, or its metadata and containers break
    Kubernetes' (each as `path: message`)."""
    found = [
        (["InferenceService", *e.absolute_path], e.message) for e in kserve_validator().iter_errors(manifest)
    ]
    parts = [("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", ["metadata"], manifest.get("metadata", {}))]
    predictor = manifest.get("spec", {}).get("predictor", {})
    for i, container in enumerate(predictor.get("containers", [])):
        parts.append(("io.k8s.api.core.v1.Container", ["spec", "predictor", "containers", i], container))
    for definition, where, part in parts:
        found += [
            ([definition.rsplit(".", 1)[-1], *where, *e.absolute_path], e.message)
            for e in kubernetes_validator(definition).iter_errors(part)
        ]
    return [f"{'.'.join(map(str, path))}: {message}" for path, message in found]


# ---------------------------------------------------------------------- fixtures and helpers
@pytest.fixture
def iris_home(home: Path, iris_model, iris) -> Path:
    """`home` with iris versions 1 and 2 (v2 is the one exported) and a model named `kserve`."""
    from registry import Registry

    with Registry() as reg:
        for name in ("iris", "iris", "kserve"):
            reg.register(iris_model, name, reference=iris[0])
    return home


def run(*args: str, ok: bool = True):
    result = runner.invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, result.output + result.stderr
    return result


def export(tmp_path: Path, *args: str) -> tuple[dict[str, Any], Path]:
    """`export kserve ... --json` into a fresh directory: its answer and the directory."""
    out = tmp_path / "kserve"
    done = json.loads(run("export", "kserve", *args, "--out", str(out), "--json").stdout)
    return done, out


def manifest_of(out: Path) -> dict[str, Any]:
    return yaml.safe_load((out / "inferenceservice.yaml").read_text())


def container_of(manifest: dict[str, Any]) -> dict[str, Any]:
    (container,) = manifest["spec"]["predictor"]["containers"]
    return container


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, comments left out and continued lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [(line.split(None, 1)[0], line.split(None, 1)[1]) for line in lines]


# ---------------------------------------------------------------------- the manifest
def test_the_inference_service_passes_kserves_and_kubernetes_schemas(iris_home, tmp_path) -> None:
    done, out = export(tmp_path, "iris:2")
    assert sorted(p.name for p in out.iterdir()) == sorted(done["files"])
    assert set(done["files"]) == {
        ".dockerignore",
        "Dockerfile",
        "README.txt",
        "inferenceservice.yaml",
        "iris-2.mdx",
        "request.json",
    }
    manifest = manifest_of(out)
    assert schema_errors(manifest) == []
    assert (manifest["apiVersion"], manifest["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert (
        manifest["metadata"]["name"] == "iris"
        and manifest["metadata"]["annotations"]["modeldeck/ref"] == "iris:2"
    )
    predictor = manifest["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor, "no supervisor runs, so no canary does"
    assert predictor["annotations"]["prometheus.io/scrape"] == "true"
    assert predictor["annotations"]["prometheus.io/port"] == str(PORT)
    assert predictor["annotations"]["prometheus.io/path"] == METRICS_PATH
    container = container_of(manifest)
    assert container["name"] == "kserve-container" and container["image"] == done["image"] == "iris:v2"
    assert container["ports"] == [{"name": "http1", "containerPort": PORT, "protocol": "TCP"}]
    assert {"name": "PROTOCOL", "value": "v2"} in container["env"]
    assert container["readinessProbe"]["httpGet"] == {"path": READY_PATH, "port": PORT}
    assert container["livenessProbe"]["httpGet"] == {"path": LIVE_PATH, "port": PORT}
    # Never measured here: the documented defaults.
    assert container["resources"] == {"requests": {"memory": "512Mi"}, "limits": {"memory": "1024Mi"}}
    assert done["memory"]["peak_bytes"] is None and done["canary_traffic_percent"] is None


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("containers", 0, "readinessProbe", "httpGet", "port"), [PORT]),
        (("containers", 0, "livenessProbe", "httpGet", "port"), 8080.5),
        (("containers", 0, "livenessProbe", "httpGet", "port"), True),
        (("containers", 0, "readinessProbe", "httpGet", "paht"), READY_PATH),
        (("containers", 0, "resources", "limits", "memory"), ["1Gi"]),
        (("containers", 0, "ports", 0, "containerPort"), "8080"),
        (("containers", 0, "env", 0, "value"), 2),
        (("annotations", "prometheus.io/port"), PORT),
        (("canaryTrafficPercent",), "25"),
        # A custom container's protocol is its PROTOCOL variable: the predictor has no such field.
        (("protocolVersion",), "v2"),
    ],
)
def test_the_schemas_refuse_a_broken_manifest(iris_home, tmp_path, where, value) -> None:
    _, out = export(tmp_path, "iris:2")
    manifest = manifest_of(out)
    node = manifest["spec"]["predictor"]
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    errors = schema_errors(manifest)
    # Named by its path, or (a field that does not exist) in the message about its parent.
    assert any(str(where[-1]) in e for e in errors), errors


def test_kubernetes_schema_alone_refuses_what_the_crd_lets_through() -> None:
    """The CRD's metadata is any object; Kubernetes' ObjectMeta wants string annotations."""
    broken = {"name": "iris", "annotations": {"prometheus.io/port": 8080}}
    assert list(kubernetes_validator("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta").iter_errors(broken))


def test_the_dockerfile_serves_the_imported_version_on_kserves_port(iris_home, tmp_path) -> None:
    _, out = export(tmp_path, "iris:2")
    steps = instructions((out / "Dockerfile").read_text())
    assert steps[0] == ("FROM", "python:3.11-slim")
    install = next(args for op, args in steps if op == "RUN")
    assert install.startswith("pip install ") and f'"modeldeck=={version("modeldeck")}"' in install
    runs = [json.loads(args) for op, args in steps if op == "RUN" and args.startswith("[")]
    assert runs == [["modeldeck", "import", "/opt/modeldeck/iris-2.mdx", "--keep-version"]]
    cmd = json.loads(dict(steps)["CMD"])
    # The import keeps the version's number, so the image serves iris:2 as this registry does.
    assert (
        cmd
        == serve_command("iris:2")
        == ["modeldeck", "serve", "iris:2", "--host", "0.0.0.0", "--port", str(PORT), "--no-auth"]
    )
    assert ("USER", "10001") in steps
    assert container_of(manifest_of(out))["securityContext"]["runAsUser"] == 10001
    assert (out / ".dockerignore").read_text() == "*\n!iris-2.mdx\n"


def test_a_wheel_of_modeldeck_is_copied_and_installed(iris_home, tmp_path) -> None:
    wheel = tmp_path / f"modeldeck-{version('modeldeck')}-py3-none-any.whl"
    wheel.write_bytes(b"PK a wheel")
    done, out = export(tmp_path, "iris:2", "--wheel", str(wheel))
    assert (out / wheel.name).read_bytes() == b"PK a wheel" and wheel.name in done["files"]
    steps = instructions((out / "Dockerfile").read_text())
    assert ("COPY", f"{wheel.name} /tmp/{wheel.name}") in steps
    assert any(op == "RUN" and f'pip install "/tmp/{wheel.name}"' in args for op, args in steps)
    assert f"!{wheel.name}" in (out / ".dockerignore").read_text().splitlines()
    result = run(
        "export", "kserve", "iris:2", "--out", str(tmp_path / "x"), "--wheel", str(tmp_path), ok=False
    )
    assert result.exit_code == 1 and "not a modeldeck wheel" in result.stderr


# ---------------------------------------------------------------------- canary and memory
def _deployment(name: str, rollout: RolloutStatus | None = None) -> DeploymentStatus:
    status = DeploymentStatus(
        name=name,
        model="iris",
        version=1,
        standby_version=None,
        host="127.0.0.1",
        port=9999,
        workers=2,
        options={},
        updated_at=None,
        url="http://127.0.0.1:9999",
        outside_url=None,
        status=DeploymentState.RUNNING,
        message="",
        restarts=0,
        workers_running=2,
        processes=[],
    )
    if rollout is not None:
        status.rollout = rollout
    return status


def _rollout(mode: str, version: int, weight: float, stage: str = "running") -> RolloutStatus:
    steps = [5.0, 25.0, 50.0, 100.0] if mode == "canary" else []
    return RolloutStatus(
        mode=mode,
        version=version,
        stage=stage,
        step=2,
        steps=steps,
        weight=weight,
        started=0.0,
        step_elapsed=1.0,
        next_check=59.0,
        settings={},
        checks=[],
    )


def test_a_running_canary_of_the_version_gives_its_share(iris_home) -> None:
    from registry import Registry

    with Registry() as reg:
        info = reg.get("iris:2")
    percent, notes = canary_share(info, [_deployment("iris", _rollout("canary", 2, 25.0))])
    assert (percent, notes) == (25, [])
    manifest = inference_service(
        info, name="iris", image="iris:v2", memory=memory_from([]), canary_percent=25
    )
    assert manifest["spec"]["predictor"]["canaryTrafficPercent"] == 25
    assert schema_errors(manifest) == []
    # No canary of *this* version: no share, and the notes say why.
    assert canary_share(info, [_deployment("iris")]) == (None, [])
    assert canary_share(info, [_deployment("iris", _rollout("canary", 2, 25.0, stage="aborting"))]) == (
        None,
        [],
    )
    percent, notes = canary_share(info, [_deployment("iris", _rollout("canary", 3, 25.0))])
    assert percent is None and "canary of iris:3" in notes[0]
    percent, notes = canary_share(info, [_deployment("iris", _rollout("shadow", 2, 0.0))])
    assert percent is None and "no shadow traffic" in notes[0]
    both = [_deployment("a", _rollout("canary", 2, 25.0)), _deployment("b", _rollout("canary", 2, 50.0))]
    with pytest.raises(ExportError, match="--deployment"):
        canary_share(info, both)
    assert (
        "canaryTrafficPercent"
        not in inference_service(info, name="iris", image="i", memory=memory_from([]))["spec"]["predictor"]
    )


def _rollup(deployment: str, version: int, rss: float, minutes: int) -> dict[str, Any]:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    return {
        "deployment": deployment,
        "model": "iris",
        "version": version,
        "resolution": 60,
        "at": at,
        "rss": rss,
    }


def test_memory_comes_from_the_versions_rollups(iris_home, tmp_path) -> None:
    from registry import Registry
    from registry.deployments import save_deployment
    from registry.info import DeploymentInfo
    from registry.monitoring.rollups import write_rollups

    with Registry() as reg:
        save_deployment(reg, DeploymentInfo("iris", "iris", 2, None, "127.0.0.1", 9999, 2), "deployed")
        write_rollups(
            reg.db,
            [
                _rollup("iris", 2, 400 * MIB, 0),  # two workers: 200 MiB each
                _rollup("iris", 2, 600 * MIB, 1),  # 300 MiB each: the peak
                _rollup("iris", 1, 4000 * MIB, 2),  # another version's: not this one's memory
                _rollup("gone", 2, 350 * MIB, 3),  # a deployment since removed: counted as one worker
            ],
        )
    done, out = export(tmp_path, "iris:2")
    resources = container_of(manifest_of(out))["resources"]
    # The peak of one worker is 350 MiB; requests 25 % over it, limits twice it, in whole 16 MiB.
    assert resources == {"requests": {"memory": "448Mi"}, "limits": {"memory": "704Mi"}}
    assert done["memory"]["peak_bytes"] == 350 * MIB and done["memory"]["windows"] == 3
    assert manifest_of(out)["metadata"]["annotations"]["modeldeck/memory"].startswith(
        "measured: peak 350 MiB"
    )
    done, out = export(tmp_path / "only", "iris:2", "--deployment", "iris")
    assert container_of(manifest_of(out))["resources"]["requests"] == {"memory": "384Mi"}  # 300 MiB * 1.25
    result = run("export", "kserve", "iris:2", "--deployment", "nosuch", ok=False)
    assert result.exit_code == 1 and "no deployment 'nosuch'" in result.stderr


def test_memory_from_is_per_worker_with_headroom() -> None:
    memory = memory_from([(1000 * MIB, 4), (None, 1), (0.0, 1), (100 * MIB, 1)])  # type: ignore[list-item]
    assert (memory.peak, memory.windows, memory.request, memory.limit) == (250 * MIB, 2, 320 * MIB, 512 * MIB)
    assert memory_from([]).peak is None


# ---------------------------------------------------------------------- errors and the old form
def test_an_unknown_ref_is_one_line_and_exit_1_and_writes_nothing(iris_home, tmp_path) -> None:
    for ref in ("nosuch:1", "iris:9", "iris@nosuch"):
        result = run("export", "kserve", ref, "--out", str(tmp_path / "out"), ok=False)
        assert result.exit_code == 1 and result.stderr.startswith("error: "), result.output
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    result = run("export", "kserve", "iris:2", "--name", "Iris_2", "--out", str(tmp_path / "out"), ok=False)
    assert result.exit_code == 1 and "bad --name 'Iris_2'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_tampered_artifact_is_refused(iris_home, tmp_path) -> None:
    from registry import Registry

    with Registry() as reg:
        path = reg.artifacts.path_of(reg.get("iris:2").artifact_sha256)
    path.chmod(0o600)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    result = run("export", "kserve", "iris:2", "--out", str(tmp_path / "out"), ok=False)
    assert result.exit_code == 1 and "changed on disk" in result.stderr
    assert not (tmp_path / "out").exists(), "nothing is written for a version that cannot be trusted"


def test_the_archive_export_is_unchanged_and_a_model_named_kserve_still_exports(iris_home, tmp_path) -> None:
    assert "exported iris:1 to" in run("export", "iris:1", str(tmp_path / "a.mdx")).stdout
    for ref in ("kserve:1", "kserve@latest"):
        written = json.loads(run("export", ref, str(tmp_path / f"{ref[-1]}.mdx"), "--json").stdout)["file"]
        assert Path(written).is_file()
    assert json.loads(run("--json", "export", "iris:2", str(tmp_path)).stdout)["file"] == str(
        tmp_path / "iris-2.mdx"
    )
    result = run("export", "kserve", ok=False)
    assert result.exit_code == 2 and "REF" in result.output
    assert "kserve" in run("export", "--help").stdout


def test_the_default_directory_is_named_after_the_version(iris_home, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    output = run("export", "kserve", "iris@latest").stdout
    assert (tmp_path / "iris-v2-kserve" / "inferenceservice.yaml").is_file()
    assert "docker build -t iris:v2 iris-v2-kserve" in output
    run("export", "kserve", "iris@latest", "--image", "registry.example/team/iris:2")  # again: replaced
    assert container_of(manifest_of(tmp_path / "iris-v2-kserve"))["image"] == "registry.example/team/iris:2"


# ---------------------------------------------------------------------- the recipe, followed
def _serve(argv: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """`argv` (a `modeldeck serve` command line) bound to a free loopback port instead of its own."""
    port = free_port()
    argv = [str(port) if a == str(PORT) else "127.0.0.1" if a == "0.0.0.0" else a for a in argv]
    process = subprocess.Popen(
        [MODELDECK, *argv[1:]], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    return process, f"http://127.0.0.1:{port}"


def _ready(process: subprocess.Popen, url: str, log: Path) -> None:
    def up() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}{READY_PATH}", timeout=1, verify=False).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, timeout=60, what=f"the server at {url}")


def _families(metrics: str) -> set[str]:
    return {line.split()[2] for line in metrics.splitlines() if line.startswith("# TYPE ")}


@pytest.mark.slow
def test_the_recipe_serves_the_same_wire_format_without_docker(iris_home, tmp_path, iris_model, iris) -> None:
    """The Dockerfile's steps as a build would run them (its RUN in a fresh home, its CMD), then KServe's
    probes, a v2 infer request and a Prometheus scrape, answered as the same version serves here."""
    _, out = export(tmp_path, "iris:2")
    steps = instructions((out / "Dockerfile").read_text())
    image_home = tmp_path / "image-home"
    copies = {dest: out / src for src, dest in (args.split() for op, args in steps if op == "COPY")}
    (home_setting,) = re.findall(r"MODELDECK_HOME=(\S+)", dict(steps)["ENV"])
    env = {**os.environ, "MODELDECK_HOME": str(image_home)}
    env.pop("MODELDECK_DB_URL", None)
    assert home_setting == "/var/lib/modeldeck"
    for op, args in steps:
        if op == "RUN" and args.startswith("["):
            argv = [str(copies.get(a, a)) for a in json.loads(args)]
            subprocess.run([MODELDECK, *argv[1:]], env=env, check=True, capture_output=True)
    imported = json.loads(
        subprocess.run(
            [MODELDECK, "show", "iris:2", "--json"], env=env, check=True, capture_output=True
        ).stdout
    )
    assert imported["origin"]["imported_from"]["version"] == 2
    cmd = json.loads(dict(steps)["CMD"])
    manifest = manifest_of(out)
    probes = container_of(manifest)
    here_env = {**os.environ}
    servers = []
    try:
        image, image_url = _serve(cmd, env, tmp_path / "image.log")
        servers.append(image)
        # The same version served from this registry, with the same options, to compare answers.
        here, here_url = _serve([*serve_command("iris:2")], here_env, tmp_path / "here.log")
        servers.append(here)
        _ready(image, image_url, tmp_path / "image.log")
        _ready(here, here_url, tmp_path / "here.log")
        for probe in ("readinessProbe", "livenessProbe"):
            assert httpx.get(image_url + probes[probe]["httpGet"]["path"]).status_code == 200
        request = json.loads((out / "request.json").read_text())
        answers = []
        for url in (image_url, here_url):
            response = httpx.post(f"{url}/v2/models/iris/infer", json={**request, "id": "r1"})
            assert response.status_code == 200, response.text
            answers.append(response.json())
        image_answer, here_answer = answers
        assert image_answer["model_name"] == "iris" and image_answer["id"] == "r1"
        predict = image_answer["outputs"][0]
        assert predict["shape"] == [1] and predict["data"] == iris_model.predict(iris[0].iloc[:1]).tolist()
        # The same answer, version number included (the import kept it).
        assert image_answer == here_answer and image_answer["model_version"] == "2"
        path = manifest["spec"]["predictor"]["annotations"]["prometheus.io/path"]
        scrape = httpx.get(image_url + path)
        assert scrape.status_code == 200 and "text/plain" in scrape.headers["content-type"]
        assert _families(scrape.text) == _families(httpx.get(here_url + path).text)
        assert 'version="2"' in scrape.text
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=15)


@pytest.mark.slow
def test_the_image_builds_with_docker(iris_home, tmp_path) -> None:
    """Only where a Docker daemon answers (and the index serves modeldeck); skipped otherwise."""
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "version"], capture_output=True, timeout=20).returncode != 0:
        pytest.skip("no Docker daemon here")
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(wheel_dir),
            str(Path(__file__).parents[1]),
        ],
        check=True,
    )
    (wheel,) = wheel_dir.glob("modeldeck-*.whl")
    _, out = export(tmp_path, "iris:2", "--wheel", str(wheel), "--image", "modeldeck-test-iris:v2")
    build = subprocess.run(
        [docker, "build", "-q", "-t", "modeldeck-test-iris:v2", str(out)], capture_output=True
    )
    assert build.returncode == 0, build.stderr.decode()[-2000:]
