"""examples/kubernetes/: the manifests pass the Kubernetes API schemas (kubernetes-validate,
offline; the PodMonitor against the part of its CRD vendored in tests/unit/data) and keep their
promises; the Dockerfile has the structure the manifests rely on (no image is built here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from hotreload.config import build_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "examples" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"
PODMONITOR_SCHEMA = json.loads(
    (Path(__file__).parent / "data" / "podmonitor.schema.json").read_text(encoding="utf-8"))


def documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d is not None]
    return docs


DOCS = documents()


def find(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def ident(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def test_every_manifest_file_is_in_the_kustomization() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("doc", [d for d in DOCS if d["apiVersion"] != "monitoring.coreos.com/v1"],
                         ids=ident)
def test_each_object_passes_the_api_schema(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{ident(doc)}: {exc.message} at {'.'.join(map(str, exc.path))}")


def test_a_mistake_fails_the_api_schema() -> None:
    bad = json.loads(json.dumps(find("Deployment", "hotreload-daemon")))
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = [1]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
    bad = json.loads(json.dumps(find("Deployment", "hotreload-daemon")))
    bad["spec"]["replica"] = 2  # a typo: strict schemas reject unknown fields
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_the_podmonitor_passes_its_crd_schema_and_selects_the_daemon() -> None:
    monitor = find("PodMonitor", "hotreload-daemon")
    jsonschema.validate(monitor, PODMONITOR_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**monitor, "spec": {**monitor["spec"], "endpoints": []}},
                            PODMONITOR_SCHEMA)
    pod = find("Deployment", "hotreload-daemon")["spec"]["template"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    ports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports


def daemon_container() -> dict[str, Any]:
    return find("Deployment", "hotreload-daemon")["spec"]["template"]["spec"]["containers"][0]


def daemon_config(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The configuration the daemon will read: its ConfigMap's file plus its environment."""
    for key, value in find("Secret", "hotreload")["stringData"].items():
        monkeypatch.setenv(key, value)
    text = find("ConfigMap", "hotreload-config")["data"]["config.yaml"]
    return build_config(yaml.safe_load(text), origin="hotreload-config")


def test_the_daemon_runs_two_replicas_with_leader_election(
        monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = find("Deployment", "hotreload-daemon")
    assert deployment["spec"]["replicas"] == 2
    assert find("PodDisruptionBudget", "hotreload-daemon")["spec"]["minAvailable"] == 1
    config = daemon_config(monkeypatch)
    assert config.postgres is not None  # PostgreSQL configured: the advisory-lock election
    assert config.postgres.display_dsn().startswith("postgresql://hotreload:***@")
    assert daemon_container()["envFrom"] == [{"secretRef": {"name": "hotreload"}}]


def test_probes_and_metrics_are_on_the_daemons_http_port(
        monkeypatch: pytest.MonkeyPatch) -> None:
    container = daemon_container()
    config = daemon_config(monkeypatch)
    assert config.daemon.http is not None
    host, _, port = config.daemon.http.rpartition(":")
    assert host == "0.0.0.0"  # reachable by the kubelet and Prometheus
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": int(port)}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    annotations = find("Deployment", "hotreload-daemon")["spec"]["template"]["metadata"][
        "annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": port,
                           "prometheus.io/path": "/metrics"}


def test_the_file_source_is_a_configmap_mounted_as_a_directory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = daemon_config(monkeypatch)
    spec = find("Deployment", "hotreload-daemon")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in daemon_container()["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    (source,) = config.sources.files
    directory, name = source.path.rsplit("/", 1)
    mount = mounts[directory]
    assert "subPath" not in mount  # a subPath mount never sees ConfigMap updates
    configmap = find("ConfigMap", volumes[mount["name"]]["configMap"]["name"])
    document = yaml.safe_load(configmap["data"][name])
    assert document["pricing"]["multiplier"] == 1.0
    args = daemon_container()["args"]
    config_path = args[args.index("-c") + 1]
    config_mount = mounts[config_path.rsplit("/", 1)[0]]
    assert volumes[config_mount["name"]]["configMap"]["name"] == "hotreload-config"


def test_the_app_uses_the_library_with_the_same_secret_and_image() -> None:
    app = find("Deployment", "shop-api")
    container = app["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == daemon_container()["image"]
    assert container["command"] == ["uvicorn"] and "app:app" in container["args"]
    secret = find("Secret", "hotreload")["stringData"]
    env = {e["name"]: e for e in container["env"]}
    for item in env.values():
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert ref["name"] == "hotreload" and ref["key"] in secret
    assert "HOTRELOAD_REDIS__URL" in env
    assert container["readinessProbe"]["httpGet"] == {"path": "/settings", "port": "http"}
    service = find("Service", "shop-api")
    assert service["spec"]["selector"].items() <= app["spec"]["template"]["metadata"][
        "labels"].items()


# ------------------------------------------------------------------ the Dockerfile


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (K8S / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def test_the_dockerfile_structure() -> None:
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")  # the supported Python, a pinned tag
    assert sum(i == "FROM" for i, _ in steps) == 1
    installs = " ".join(a for i, a in steps if i == "RUN" and "pip install" in a)
    assert '".[daemon,fastapi]"' in installs and "uvicorn" in installs
    for instruction, args in steps:
        if instruction == "COPY":
            *sources, _ = args.split()
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
    users = [a for i, a in steps if i == "USER"]
    assert users and users[-1] not in {"root", "0"}
    entry = [json.loads(a) for i, a in steps if i == "ENTRYPOINT"]
    assert entry == [["hotreload"]]  # exec form: signals reach the daemon (clean stop)
    assert [json.loads(a) for i, a in steps if i == "CMD"] == [["daemon"]]
    exposed = {p for i, a in steps if i == "EXPOSE" for p in a.split()}
    assert {"9464", "8000"} <= exposed
    assert ("COPY", "examples/fastapi_app /app") in steps
    workdirs = [a for i, a in steps if i == "WORKDIR"]
    assert workdirs[-1] == "/app"  # where app.yaml's uvicorn finds app:app


def test_the_readme_builds_the_image_the_manifests_run() -> None:
    readme = (K8S / "README.md").read_text()
    build = re.search(r"docker build -f examples/kubernetes/Dockerfile -t (\S+) \.", readme)
    assert build is not None
    assert build[1] == daemon_container()["image"]


def test_kubectl_renders_the_kustomization_offline() -> None:
    # Not skipped without kubectl: a check that silently does not run is no check (.ci/run's
    # machine has it; elsewhere install kubectl, or deselect this test knowingly).
    assert shutil.which("kubectl") is not None, "kubectl is not installed"
    result = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    rendered = {ident(d) for d in yaml.safe_load_all(result.stdout) if d}
    assert rendered == {ident(d) for d in DOCS}
