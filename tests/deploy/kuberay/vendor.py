"""Vendor KubeRay's CRD schemas and operator feature gates for the deploy tests.

    python tests/deploy/kuberay/vendor.py PATH/TO/kuberay v1.7.0

Reads, at the given tag of a KubeRay checkout, the ``v1`` schema of every ``ray.io`` CRD in
``ray-operator/config/crd/bases/`` and the Helm chart's default ``featureGates``, and writes
them next to this file: ``crds.json.gz`` (kind -> openAPIV3Schema) and ``feature_gates.json``,
with the tag and commit in ``VERSION``. Run it to move doodl to another KubeRay release, then
fix what the deploy tests find.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
BASES = "ray-operator/config/crd/bases"


def _git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def vendor(repo: str, tag: str) -> None:
    commit = _git(repo, "rev-parse", f"{tag}^{{commit}}").strip()
    schemas = {}
    for path in _git(repo, "ls-tree", "--name-only", f"{tag}:{BASES}").split():
        crd = yaml.safe_load(_git(repo, "show", f"{tag}:{BASES}/{path}"))
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        schemas[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    values = yaml.safe_load(_git(repo, "show", f"{tag}:helm-chart/kuberay-operator/values.yaml"))
    with gzip.open(HERE / "crds.json.gz", "wt") as f:
        json.dump(schemas, f, sort_keys=True, separators=(",", ":"))
    (HERE / "feature_gates.json").write_text(json.dumps(values["featureGates"], indent=1) + "\n")
    (HERE / "VERSION").write_text(f"{tag} {commit}\n")
    print(f"vendored {sorted(schemas)} and {len(values['featureGates'])} feature gates of KubeRay {tag} ({commit})")


if __name__ == "__main__":
    vendor(*sys.argv[1:3])
