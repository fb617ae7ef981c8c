"""Validate ``ray.io`` manifests against KubeRay's own CRD schemas, strictly.

The API server prunes fields a CRD does not declare; ``kubectl apply`` (server-side field
validation ``Strict``, its default) refuses them instead. This reproduces that: every object
schema that lists ``properties`` and does not say ``x-kubernetes-preserve-unknown-fields``
gets ``additionalProperties: false``, and ``x-kubernetes-int-or-string`` becomes "an integer
or a string". CEL rules (``x-kubernetes-validations``) and list-map key uniqueness are not
checked here (only the API server runs them); object metadata is checked for the fields a
manifest may set. The schemas are KubeRay's, vendored by ``kuberay/vendor.py``.
"""

from __future__ import annotations

import copy
import gzip
import json
from functools import cache
from pathlib import Path

import jsonschema

VENDORED = Path(__file__).resolve().parent / "kuberay"
METADATA_FIELDS = {"name", "generateName", "namespace", "labels", "annotations"}


def kuberay_version() -> str:
    """The KubeRay release whose CRDs are vendored (``v1.7.0``)."""
    return (VENDORED / "VERSION").read_text().split()[0]


def _strict(schema: dict) -> dict:
    """The CRD schema as a JSON Schema that refuses unknown fields."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if out.pop("x-kubernetes-int-or-string", False):
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def _validators() -> dict[str, jsonschema.Draft7Validator]:
    with gzip.open(VENDORED / "crds.json.gz", "rt") as f:
        schemas = json.load(f)
    return {kind: jsonschema.Draft7Validator(_strict(schema)) for kind, schema in schemas.items()}


def crd_errors(doc: dict) -> list[str]:
    """Every way ``doc`` (a ray.io/v1 manifest) breaks its kind's CRD: unknown fields, missing
    required ones, wrong types or values. Empty when KubeRay would accept it."""
    validators = _validators()
    if doc.get("apiVersion") != "ray.io/v1" or doc.get("kind") not in validators:
        return [f"not a ray.io/v1 kind KubeRay {kuberay_version()} knows: {doc.get('apiVersion')} {doc.get('kind')}"]
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
              for e in validators[doc["kind"]].iter_errors(doc)]
    metadata = doc.get("metadata") or {}
    errors += [f"metadata: unknown field {k!r}" for k in sorted(set(metadata) - METADATA_FIELDS)]
    if not (metadata.get("name") or metadata.get("generateName")):
        errors.append("metadata: name or generateName is required")
    return errors


def with_change(doc: dict, path: tuple, value=None, *, delete: bool = False) -> dict:
    """A copy of ``doc`` with the field at ``path`` set to ``value`` (or deleted)."""
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc
