"""deploy/: every manifest parses; the ray.io kinds pass KubeRay's own CRDs strictly (the
release doodl supports, vendored in tests/deploy/kuberay/) and the core kinds Kubernetes'
schemas; Ray's token auth goes through KubeRay's authOptions; and everything the CLI relies on
agrees: entrypoints are real `doodl` commands and flags, specs exist and are valid, images,
Ray versions and names match, secrets are referenced, never inlined."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import ray
import yaml

from doodl.orchestrator.cli import _parser
from doodl.orchestrator.spec import parse_spec
from tests.deploy.crd_validation import crd_errors, kuberay_version, with_change

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFESTS = sorted((DEPLOY / "kuberay").glob("*.yaml")) + sorted((DEPLOY / "mlflow").glob("*.yaml"))
CORE_KINDS = {"Service", "StatefulSet", "Deployment", "ConfigMap", "CronJob", "ServiceAccount", "Role", "RoleBinding"}
SENSITIVE = re.compile(r"TOKEN|SECRET|PASSWORD|ACCESS_KEY|BACKEND_STORE_URI")


RAY_TOKEN_SECRET = "doodl-ray-token"  # KubeRay reads its key auth_token


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d and "kind" in d]  # not Helm values


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


def _cluster_specs(doc: dict) -> list[dict]:
    """The RayCluster specs a ray.io manifest makes: its own, a RayJob's, a RayCronJob's template's."""
    spec = doc["spec"].get("jobTemplate", doc["spec"])
    return [spec.get("rayClusterSpec", spec)]


def _containers(cluster: dict) -> list[dict]:
    groups = [g for g in [cluster.get("headGroupSpec"), *cluster.get("workerGroupSpecs", [])] if g]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def manifest_errors(doc: dict) -> list[str]:
    """What KubeRay would refuse in ``doc`` (its CRD, strictly), and where its Ray cluster
    would run without token auth: every cluster spec sets authOptions to mode token with
    doodl's Secret, and no container sets Ray's auth variables itself (KubeRay injects them
    into the Ray containers, the autoscaler and the job submitter from authOptions)."""
    errors = crd_errors(doc)
    for cluster in _cluster_specs(doc):
        auth = cluster.get("authOptions")
        if auth != {"mode": "token", "secretName": RAY_TOKEN_SECRET}:
            errors.append(f"authOptions is {auth!r}, not token auth with Secret {RAY_TOKEN_SECRET}")
        for c in _containers(cluster):
            errors += [f"container {c['name']} sets {e['name']} itself" for e in c.get("env", [])
                       if e["name"].startswith("RAY_AUTH_")]
    return errors


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


@pytest.mark.parametrize("name, doc", RAY, ids=[n for n, _ in RAY])
def test_ray_manifests_pass_kuberays_crds_strictly_with_token_auth(name, doc):
    assert kuberay_version() == "v1.7.0"
    assert manifest_errors(doc) == []


MUTATIONS = {  # what each change breaks, as KubeRay (or doodl's auth policy) reports it
    "no authOptions": (lambda d, c: with_change(d, (*c, "authOptions"), delete=True), "authOptions is None"),
    "auth disabled": (lambda d, c: with_change(d, (*c, "authOptions", "mode"), "disabled"), "authOptions is"),
    "unknown field": (lambda d, c: with_change(d, (*c, "concurrencyPolicy"), "Forbid"),
                      "'concurrencyPolicy' was unexpected"),
    "unknown container field": (lambda d, c: with_change(d, (*c, "headGroupSpec", "template", "spec", "containers",
                                                             0, "envv"), []), "'envv' was unexpected"),
    "missing container name": (lambda d, c: with_change(d, (*c, "headGroupSpec", "template", "spec", "containers",
                                                            0, "name"), delete=True), "'name' is a required property"),
    "missing head group": (lambda d, c: with_change(d, (*c, "headGroupSpec"), delete=True),
                           "'headGroupSpec' is a required property"),
    "wrong type": (lambda d, c: with_change(d, (*c, "workerGroupSpecs", 0, "replicas"), "two"), "'two' is not of"),
    "token env by hand": (lambda d, c: with_change(d, (*c, "headGroupSpec", "template", "spec", "containers", 0, "env"),
                                                   [{"name": "RAY_AUTH_MODE", "value": "token"}]),
                          "sets RAY_AUTH_MODE itself"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize("name, doc", RAY, ids=[n for n, _ in RAY])
def test_the_validation_fails_on_a_broken_manifest(name, doc, mutation):
    spec_path = ("spec", "jobTemplate") if doc["kind"] == "RayCronJob" else ("spec",)
    cluster = (*spec_path, "rayClusterSpec") if doc["kind"] != "RayCluster" else spec_path
    change, expected = MUTATIONS[mutation]
    errors = manifest_errors(change(doc, cluster))
    assert any(expected in e for e in errors), errors


def test_the_raycronjob_has_only_what_kuberay_1_7_knows():
    raycron = next(d for _, d in ALL if d["kind"] == "RayCronJob")
    assert set(raycron["spec"]) == {"schedule", "timeZone", "jobTemplate"}  # no concurrencyPolicy: the audit lease
    assert crd_errors(with_change(raycron, ("spec", "timeZone"), "")) != []  # KubeRay's minLength 1


def test_the_cronjob_fallback_runs_the_same_rayjob_on_the_same_schedule():
    """Without the RayCronJob feature gate, a CronJob creates the RayJob in its ConfigMap:
    field for field the RayCronJob's jobTemplate (resources, secrets, command)."""
    raycron = next(d for _, d in ALL if d["kind"] == "RayCronJob")
    cron = next(d for _, d in ALL if d["kind"] == "CronJob")
    rayjob = EMBEDDED[0][1]
    assert rayjob["kind"] == "RayJob" and rayjob["metadata"]["generateName"] == raycron["metadata"]["name"] + "-"
    assert rayjob["spec"] == raycron["spec"]["jobTemplate"]
    assert (cron["spec"]["schedule"], cron["spec"]["timeZone"]) == (raycron["spec"]["schedule"], raycron["spec"]["timeZone"])


def test_the_operator_values_turn_on_the_raycronjob_gate_and_change_nothing_else():
    import json
    chart = json.loads((Path(__file__).parent / "kuberay" / "feature_gates.json").read_text())
    values = yaml.safe_load((DEPLOY / "kuberay" / "operator-values.yaml").read_text())
    assert values["featureGates"] == [dict(g, enabled=g["enabled"] or g["name"] == "RayCronJob") for g in chart]
    assert {"name": "RayCronJob", "enabled": False} in chart  # off in the chart: the values file is needed
    for doc in (DEPLOY / "README.md", DEPLOY.parent / "README.md"):
        text = doc.read_text()
        assert "operator-values.yaml" in text and "RayCronJob" in text and "feature gate" in text, doc


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
