"""k8s/: every overlay rendered by the real kubectl kustomize and validated offline against
KubeRay's CRDs (unknown fields refused) and Kubernetes' schemas; the Serve config inside each
RayService accepted by Ray's schema and the app's and equal to serve_config.yaml merged with the
overlays; the manifests consistent with each other, the image and pyproject.toml."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from deploy.cli import kuberay
from deploy.cli import main as cli
from deploy.config.serve_config import app_args, validate
from deploy.config.settings import AppArgs
from tests.support.k8s import ROOT, check_worker_groups, kustomize
from tests.support.k8s import validate as validate_manifest

LAYERS = kuberay.layers()
OVERLAYS = [layer for layer in LAYERS if layer.directory != kuberay.BASE]
EXPECTED_KINDS = {
    "RayService": 1,
    "Deployment": 1,
    "Service": 1,
    "PersistentVolumeClaim": 3,  # model cache, Ollama models, jobs data
    "ConfigMap": 1,
    "PodMonitor": 1,
    "PrometheusRule": 1,
    "NetworkPolicy": 1,
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {layer.name: kustomize(layer.directory) for layer in LAYERS}


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] == "RayService":
        cluster = doc["spec"]["rayClusterConfig"]
        groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
        return [c for g in groups for c in g["template"]["spec"]["containers"]]
    if doc["kind"] == "Deployment":
        containers: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
        return containers
    return []


def _gpu_group(service: dict[str, Any]) -> dict[str, Any]:
    groups = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    (group,) = [g for g in groups if g["groupName"] == "gpu"]
    return group


def test_there_are_two_overlays_one_gpu_and_multi_gpu() -> None:
    assert {layer.name for layer in OVERLAYS} == {
        "overlays/gpu-7b",
        "overlays/multi-gpu-72b-awq",
    }


def test_the_generated_files_are_current() -> None:
    assert kuberay.stale() == [], "run `vidserve kuberay` and commit what it writes"


def test_a_change_to_a_source_makes_the_generated_files_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    alerts = tmp_path / "alerts.yml"
    rules = yaml.safe_load(kuberay.ALERTS.read_text())
    rules["groups"][0]["rules"][0]["for"] = "1m"
    alerts.write_text(yaml.safe_dump(rules))
    monkeypatch.setattr(kuberay, "ALERTS", alerts)
    assert kuberay.stale() == [kuberay.RULES]
    assert cli.main(["kuberay", "--check"]) == 1
    assert "prometheus-rule.generated.yaml" in capsys.readouterr().err


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_each_layer_renders_and_validates(
    layer: kuberay.Layer, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    docs = rendered[layer.name]
    kinds: dict[str, int] = {}
    for doc in docs:
        validate_manifest(doc)
        kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
    assert kinds == EXPECTED_KINDS


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_the_serve_config_inside_is_serve_config_yaml_with_the_overlays(
    layer: kuberay.Layer, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    service = _one(rendered[layer.name], "RayService")
    inside = yaml.safe_load(service["spec"]["serveConfigV2"])
    validate(inside)  # Ray's ServeDeploySchema, unknown deployment keys, the app's AppArgs
    AppArgs.model_validate(app_args(inside))
    assert inside == kuberay.serve_config(layer)


@pytest.mark.parametrize("layer", OVERLAYS, ids=lambda layer: layer.name)
def test_gpus_per_vllm_worker_hold_one_replica(
    layer: kuberay.Layer, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    service = _one(rendered[layer.name], "RayService")
    args = AppArgs.model_validate(app_args(yaml.safe_load(service["spec"]["serveConfigV2"])))
    pipeline = int(args.llm.engine_kwargs.get("pipeline_parallel_size", 1))
    (worker,) = _gpu_group(service)["template"]["spec"]["containers"]
    gpus = int(worker["resources"]["limits"]["nvidia.com/gpu"])
    assert gpus >= args.llm.tensor_parallel_size * pipeline, (gpus, args.llm.tensor_parallel_size)
    assert args.llm.accelerator.value == "gpu"


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_gpu_requests_equal_limits_and_every_port_is_named(
    layer: kuberay.Layer, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    for doc in rendered[layer.name]:
        for container in _containers(doc):
            resources = container.get("resources", {})
            for name in ("nvidia.com/gpu", "cpu", "memory"):
                assert resources.get("requests", {}).get(name) == resources.get("limits", {}).get(
                    name
                ), (container["name"], name)
            for port in container.get("ports", []):
                assert re.fullmatch(r"[a-z0-9-]{1,15}", port.get("name", "")), port
        if doc["kind"] == "Service":
            for port in doc["spec"]["ports"]:
                assert port.get("name"), port


def _ray_pin() -> str:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in dependencies if d.startswith("ray[")]
    return pin.split("==")[1]


def test_image_tag_ray_version_pin_and_dockerfile_agree(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    base_image = re.search(r"^FROM rayproject/ray:(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert base_image is not None
    for docs in rendered.values():
        cluster = _one(docs, "RayService")["spec"]["rayClusterConfig"]
        version = cluster["rayVersion"]
        assert version == _ray_pin()
        assert base_image.group(1).split("-")[0] == version
        for container in _containers(_one(docs, "RayService")):
            tag = container["image"].rsplit(":", 1)[1]
            assert tag.split("-")[0] == version, container["image"]
            assert tag == base_image.group(1), "the app image is named after its Ray base image"


def test_the_cluster_is_set_up_as_kuberay_recommends(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    service = _one(rendered["overlays/gpu-7b"], "RayService")
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert cluster["enableInTreeAutoscaling"] is True
    assert service["spec"]["upgradeStrategy"]["type"] == "NewCluster"
    head_ports = {
        p["name"] for p in cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert head_ports >= {"serve", "metrics", "dashboard", "client", "gcs"}
    gpu = _gpu_group(service)["template"]["spec"]
    assert gpu["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert gpu["nodeSelector"]
    volumes = {v["name"]: v for v in gpu["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == "vidserve-model-cache"
    env = {e["name"]: e for e in gpu["containers"][0]["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "vidserve-hf-token"
    assert env["HF_HOME"]["value"].startswith("/models")


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_clients_reach_the_serve_port_only(
    layer: kuberay.Layer, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    """The Service clients reach carries the Serve port alone, and the NetworkPolicy over every
    Ray pod lets in from outside Ray only the Serve port; the dashboard/job API only from the
    operator's namespace; metrics only from Prometheus's."""
    docs = rendered[layer.name]
    service = _one(docs, "RayService")
    http_port = yaml.safe_load((ROOT / "serve_config.yaml").read_text())["http_options"]["port"]
    serve_ports = service["spec"]["serveService"]["spec"]["ports"]
    assert [(p["name"], p["port"]) for p in serve_ports] == [("serve", http_port)]
    policy = _one(docs, "NetworkPolicy")["spec"]
    ray_pods = _one(docs, "PodMonitor")["spec"]["selector"]["matchLabels"]
    assert policy["podSelector"]["matchLabels"] == ray_pods
    assert policy["policyTypes"] == ["Ingress"]
    open_to_all = [rule for rule in policy["ingress"] if "from" not in rule]
    assert [[p["port"] for p in rule["ports"]] for rule in open_to_all] == [[http_port]]
    by_port: dict[int, list[dict[str, Any]]] = {}
    for rule in policy["ingress"]:
        for port in rule.get("ports", []):
            by_port.setdefault(port["port"], []).extend(rule.get("from", []))
    assert by_port[8265]
    assert all("namespaceSelector" in peer for peer in by_port[8265])
    assert by_port[8080]
    assert all("namespaceSelector" in peer for peer in by_port[8080])
    (internal,) = [rule for rule in policy["ingress"] if "ports" not in rule]
    assert internal["from"] == [{"podSelector": {"matchLabels": ray_pods}}]


def test_every_ray_node_answers_the_proxys_errors_in_json(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Serve runs an HTTP proxy on every node: each Ray container loads vidserve's middleware."""
    from deploy.api.proxy_errors import CALLBACK

    service = _one(rendered["overlays/gpu-7b"], "RayService")
    for container in _containers(service):
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env.get("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH") == CALLBACK, container["name"]


@pytest.mark.parametrize("layer", OVERLAYS, ids=lambda layer: layer.name)
def test_ollama_pulls_the_model_the_app_asks_for_at_the_service_it_calls(
    layer: kuberay.Layer, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    docs = rendered[layer.name]
    args = AppArgs.model_validate(
        app_args(yaml.safe_load(_one(docs, "RayService")["spec"]["serveConfigV2"]))
    )
    (ollama,) = _containers(_one(docs, "Deployment"))
    env = {e["name"]: e.get("value") for e in ollama["env"]}
    assert env["OLLAMA_MODEL"] == args.ollama_model
    service = _one(docs, "Service")
    port = service["spec"]["ports"][0]["port"]
    assert args.ollama.host == f"http://{service['metadata']['name']}:{port}"


def test_monitoring_objects_carry_the_shipped_rules_and_dashboard(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["overlays/gpu-7b"]
    assert _one(docs, "PrometheusRule")["spec"] == yaml.safe_load(kuberay.ALERTS.read_text())
    dashboard = _one(docs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["vidserve.json"]) == json.loads(
        kuberay.DASHBOARD.read_text()
    )
    monitor = _one(docs, "PodMonitor")
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    ray_ports = {p["name"] for c in _containers(_one(docs, "RayService")) for p in c["ports"]}
    assert "metrics" in ray_ports


# --- what must be refused ---------------------------------------------------------------


def test_a_typo_in_a_field_name_is_rejected(rendered: dict[str, list[dict[str, Any]]]) -> None:
    service = copy.deepcopy(_one(rendered["overlays/gpu-7b"], "RayService"))
    group = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    group["rayStartParam"] = group.pop("rayStartParams")  # the typo
    with pytest.raises(jsonschema.ValidationError, match="rayStartParam"):
        validate_manifest(service)
    deployment = copy.deepcopy(_one(rendered["overlays/gpu-7b"], "Deployment"))
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_manifest(deployment)


def test_min_replicas_above_max_is_rejected(rendered: dict[str, list[dict[str, Any]]]) -> None:
    service = copy.deepcopy(_one(rendered["overlays/gpu-7b"], "RayService"))
    group = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][1]
    group["minReplicas"], group["maxReplicas"] = 3, 2
    with pytest.raises(ValueError, match="minReplicas 3 > maxReplicas 2"):
        check_worker_groups(service["spec"]["rayClusterConfig"])
    inside = yaml.safe_load(service["spec"]["serveConfigV2"])
    vllm = next(d for d in inside["applications"][0]["deployments"] if d["name"] == "VLLM")
    vllm["autoscaling_config"].update(min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="max_replicas"):
        validate(inside)


def test_a_wrong_kind_version_or_kustomization_is_rejected(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(ValueError, match=r"missing\.yaml"):
        kustomize(broken)
    with pytest.raises(ValueError, match=r"ray\.io/v1"):
        validate_manifest({"apiVersion": "ray.io/v1alpha1", "kind": "RayService", "spec": {}})


@pytest.mark.parametrize("layer", [layer.name for layer in OVERLAYS])
def test_the_cpu_workers_get_the_jobs_volume_and_database_secret(
    rendered: dict[str, list[dict[str, Any]]], layer: str
) -> None:
    """Uploads of jobs on a volume every extractor reads; the database URL from a Secret."""
    service = _one(rendered[layer], "RayService")
    cpu = next(
        g
        for g in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
        if g["groupName"] == "cpu"
    )
    pod = cpu["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = {
        v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]
    }
    assert claims["jobs-data"] == "vidserve-jobs-data"
    store = next(e for e in container["env"] if e["name"] == "VIDSERVE_STORE_URL")
    assert store["valueFrom"]["secretKeyRef"] == {
        "name": "vidserve-jobs-db",
        "key": "url",
        "optional": True,
    }
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert config["applications"][0]["args"]["jobs"]["data_dir"] == mounts["jobs-data"]
