"""deploy/: every manifest parses, core kinds pass Kubernetes' schemas, and everything the
CLI relies on agrees: entrypoints are real `doodl` commands and flags, specs exist and are
valid, images and names match, secrets are referenced, never inlined."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import ray
import yaml

from orchestrator.cli import _parser
from orchestrator.spec import parse_spec

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFESTS = sorted((DEPLOY / "kuberay").glob("*.yaml")) + sorted((DEPLOY / "mlflow").glob("*.yaml"))
CORE_KINDS = {"Service", "StatefulSet", "Deployment", "ConfigMap", "CronJob", "ServiceAccount", "Role", "RoleBinding"}
SENSITIVE = re.compile(r"TOKEN|SECRET|PASSWORD|ACCESS_KEY|BACKEND_STORE_URI")


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


ALL = [(p.name, d) for p in MANIFESTS for d in _docs(p)]
CONFIGMAPS = {d["metadata"]["name"]: d for _, d in ALL if d["kind"] == "ConfigMap"}
# the RayJob inside the CronJob fallback's ConfigMap is a manifest too
EMBEDDED = [("cronjob-audit.yaml#rayjob", yaml.safe_load(CONFIGMAPS["doodl-audit-rayjob"]["data"]["rayjob.yaml"]))]
RAY = [(n, d) for n, d in ALL + EMBEDDED if d.get("apiVersion") == "ray.io/v1"]


def _walk(node, key=None):
    """Every (key, value) pair in a nested document."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from _walk(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)


def _entrypoints():
    for name, doc in RAY:
        spec = doc["spec"].get("jobTemplate", doc["spec"])
        if "entrypoint" in spec:
            yield name, spec["entrypoint"]


def test_every_manifest_parses_and_has_the_expected_kinds():
    kinds = {d["kind"] for _, d in ALL + EMBEDDED}
    assert {"RayCluster", "RayJob", "RayCronJob", "CronJob", "Role", "RoleBinding", "ServiceAccount",
            "StatefulSet", "Deployment", "Service", "ConfigMap"} <= kinds
    assert yaml.safe_load((DEPLOY / "ray-cluster.yaml").read_text())["cluster_name"] == "doodl"


@pytest.mark.parametrize("name, doc", [(n, d) for n, d in ALL if d["kind"] in CORE_KINDS],
                         ids=lambda x: x if isinstance(x, str) else x["kind"] + "/" + x["metadata"]["name"])
def test_core_kinds_pass_the_kubernetes_schema(name, doc):
    import kubernetes_validate
    kubernetes_validate.validate(doc, "1.31", strict=True)


@pytest.mark.parametrize("name, entrypoint", list(_entrypoints()))
def test_entrypoints_are_real_doodl_commands(name, entrypoint):
    argv = shlex.split(entrypoint)
    assert argv[0] == "doodl"
    args = _parser().parse_args(argv[1:])  # argparse exits on an unknown command or flag
    assert args.command in ("sweep", "audit", "reduce")
    assert args.tracking_uri == "http://mlflow:5000" and args.store.startswith("s3://")
    spec_file = Path(args.spec).name
    assert args.spec == f"/specs/{spec_file}" and spec_file in CONFIGMAPS["doodl-specs"]["data"]


def test_specs_in_the_configmap_are_valid():
    for name, text in CONFIGMAPS["doodl-specs"]["data"].items():
        spec = parse_spec(yaml.safe_load(text), name)
        assert spec.name == Path(name).stem


def test_images_and_ray_versions_agree():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    ray_version = re.search(r"ARG RAY_VERSION=(\S+)", dockerfile).group(1)
    assert ray_version == ray.__version__
    for name, doc in RAY:
        spec = doc["spec"].get("jobTemplate", doc["spec"])
        cluster = spec.get("rayClusterSpec", spec)
        assert cluster["rayVersion"] == ray_version, name
        groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
        for group in groups:
            for c in group["template"]["spec"]["containers"]:
                gpu = "nvidia.com/gpu" in c.get("resources", {}).get("limits", {})
                assert c["image"] == ("doodl/doodl:0.1.0-cuda" if gpu else "doodl/doodl:0.1.0"), name
    cluster = yaml.safe_load((DEPLOY / "ray-cluster.yaml").read_text())
    assert cluster["docker"]["image"] == "doodl/doodl:0.1.0"
    assert cluster["available_node_types"]["gpu_workers"]["docker"]["worker_image"] == "doodl/doodl:0.1.0-cuda"
    assert "doodl/doodl:0.1.0-cuda" in dockerfile and "VARIANT=cuda" in dockerfile


def test_gpu_groups_exist_and_autoscale():
    for name, doc in RAY:
        spec = doc["spec"].get("jobTemplate", doc["spec"])
        cluster = spec.get("rayClusterSpec", spec)
        if doc["kind"] in ("RayCluster", "RayJob") and not name.startswith("cronjob"):
            gpu = [g for g in cluster["workerGroupSpecs"] if g["groupName"] == "gpu"]
            assert gpu and gpu[0]["maxReplicas"] >= 1 and gpu[0]["minReplicas"] == 0, name
    raycluster = next(d for _, d in ALL if d["kind"] == "RayCluster")
    assert raycluster["spec"]["enableInTreeAutoscaling"] is True


def test_secrets_are_referenced_never_inlined():
    for name, doc in ALL + EMBEDDED:
        for key, value in _walk(doc):
            if key == "env":
                for var in value if isinstance(value, list) else []:
                    if SENSITIVE.search(var["name"]):
                        assert "value" not in var and "secretKeyRef" in var.get("valueFrom", {}), (name, var["name"])
    assert "kind: Secret" not in "".join(p.read_text() for p in MANIFESTS)  # created by the operator, not shipped


def test_names_agree_across_manifests():
    services = {d["metadata"]["name"]: d for _, d in ALL if d["kind"] == "Service"}
    assert services["mlflow"]["spec"]["ports"][0]["port"] == 5000
    for name, doc in ALL + EMBEDDED:
        for key, value in _walk(doc):
            if key == "configMap":
                assert value["name"] in CONFIGMAPS, (name, value["name"])
    cron = next(d for _, d in ALL if d["kind"] == "CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    account = pod["serviceAccountName"]
    binding = next(d for _, d in ALL if d["kind"] == "RoleBinding")
    role = next(d for _, d in ALL if d["kind"] == "Role")
    assert binding["subjects"][0]["name"] == account and binding["roleRef"]["name"] == role["metadata"]["name"]
    rule = role["rules"][0]
    assert rule["apiGroups"] == ["ray.io"] and "rayjobs" in rule["resources"] and "create" in rule["verbs"]
    raycron = next(d for _, d in ALL if d["kind"] == "RayCronJob")
    assert EMBEDDED[0][1]["spec"]["entrypoint"] == raycron["spec"]["jobTemplate"]["entrypoint"]
