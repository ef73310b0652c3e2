"""The RLJob CustomResourceDefinition, generated from the pydantic models (never edited by hand).

`crd()` turns the JSON schema pydantic produces for `RLJobSpec` and `RLJobStatus` into the structural
OpenAPI v3 schema the API server requires:

- `$ref`s into `$defs` are inlined (structural schemas have no references), `title`s dropped;
- `anyOf: [X, {type: null}]` (an optional field) becomes X — absence, not null, means unset;
- JSON-Schema-2020 `exclusiveMinimum: v` becomes OpenAPI 3.0's `minimum: v, exclusiveMinimum: true`;
- `additionalProperties: false` (pydantic's extra=forbid) is dropped: the API server prunes unknown fields
  and `kubectl apply` (strict field validation) rejects them, naming the field;
- each model's `cel_rules` ClassVar becomes that object's `x-kubernetes-validations`;
- object-valued fields that have a default in Python get `default: {}` so the API server fills in the
  nested defaults and the stored object is complete;
- `status.conditions` is a map-list keyed by `type`; `status.kopf` preserves unknown fields because kopf
  keeps its progress there, and nothing else does.

The printer columns are what `kubectl get rlj` shows: phase, GPUs, tokens/s, $/h, staleness, reward, age.
Pure: no I/O here; `hexrl crds generate` writes the YAML (`crd_yaml()`) to `crds/`.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

from hexrl.api import gpucalibration as gc
from hexrl.api import models as m

CRD_NAME = f"{m.PLURAL}.{m.GROUP}"
CATEGORIES = ["hexrl", "all"]
FILENAME = f"{CRD_NAME}.yaml"

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Lifecycle phase."},
    {"name": "GPUs", "type": "integer", "jsonPath": ".status.gpus", "description": "GPUs in the current plan."},
    {"name": "Tokens/s", "type": "number", "jsonPath": ".status.tokensPerSecond", "description": "Training-consumed tokens per second."},
    {"name": "$/h", "type": "number", "jsonPath": ".status.costPerHour", "description": "Cost per hour of the plan's GPUs."},
    {"name": "Staleness", "type": "number", "jsonPath": ".status.staleness", "description": "Observed policy lag of trained samples."},
    {"name": "Reward", "type": "number", "jsonPath": ".status.progress.meanReward", "description": "Mean reward of the last trained batches."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

_KEEP = {
    "type", "description", "properties", "required", "items", "enum", "default", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
    "additionalProperties", "format", "nullable",
}  # fmt: skip


def _models_by_name(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every pydantic model reachable from `root`, keyed by class name (the `$defs` key)."""
    found: dict[str, type[BaseModel]] = {}
    stack: list[Any] = [root]
    while stack:
        t = stack.pop()
        if isinstance(t, type) and issubclass(t, BaseModel):
            if t.__name__ in found:
                continue
            found[t.__name__] = t
            stack.extend(f.annotation for f in t.model_fields.values())
        else:
            stack.extend(getattr(t, "__args__", ()))
    return found


def _object_defaults(model: type[BaseModel]) -> set[str]:
    """Wire names of fields whose Python default is an object (default_factory of a model)."""
    out = set()
    for name, f in model.model_fields.items():
        if f.default_factory is not None and isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
            out.add(f.alias or name)
    return out


class _Converter:
    def __init__(self, schema: dict[str, Any], root: type[BaseModel]) -> None:
        self.defs = schema.get("$defs", {})
        self.models = _models_by_name(root)

    def convert(self, node: dict[str, Any], model_name: str | None = None) -> dict[str, Any]:
        node = copy.deepcopy(node)
        if "$ref" in node:
            ref = node.pop("$ref").rsplit("/", 1)[-1]
            merged = {**self.defs[ref], **node}  # outer description/default win
            return self.convert(merged, ref)
        any_of = node.pop("anyOf", None)
        if any_of is not None:
            non_null = [s for s in any_of if s.get("type") != "null"]
            if len(non_null) != 1:
                raise ValueError(f"cannot express anyOf {any_of} in a structural schema")
            if node.get("default") is None:
                node.pop("default", None)
            return self.convert({**non_null[0], **node})
        if node.get("default", 0) is None:
            node.pop("default")
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key not in _KEEP:
                continue
            if key == "properties":
                out[key] = {k: self.convert(v) for k, v in value.items()}
            elif key == "items":
                out[key] = self.convert(value)
            elif key == "additionalProperties":
                if isinstance(value, dict):
                    out[key] = self.convert(value)
            elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
                out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                out[key] = True
            else:
                out[key] = value
        model = self.models.get(model_name or "")
        if model is not None:
            for field in _object_defaults(model):
                out["properties"][field].setdefault("default", {})
            rules = list(getattr(model, "cel_rules", []))
            if rules:
                out["x-kubernetes-validations"] = [dict(r) for r in rules]
        return out


def spec_schema() -> dict[str, Any]:
    schema = m.RLJobSpec.model_json_schema(by_alias=True, mode="validation")
    out = _Converter(schema, m.RLJobSpec).convert(schema, "RLJobSpec")
    out["description"] = "What to train, with which budget and placement policy; the operator plans the rest."
    return out


def status_schema() -> dict[str, Any]:
    schema = m.RLJobStatus.model_json_schema(by_alias=True, mode="serialization")
    out = _Converter(schema, m.RLJobStatus).convert(schema, "RLJobStatus")
    out["description"] = "Observed state written by the operator: phase, conditions, the current plan, progress."
    out["properties"]["kopf"] = {
        "type": "object",
        "description": "Progress storage of the kopf framework (the operator's handler state).",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    conds = out["properties"]["conditions"]
    conds["x-kubernetes-list-type"] = "map"
    conds["x-kubernetes-list-map-keys"] = ["type"]
    # Defaults in status would be applied to every read of an object; the operator writes what it means.
    _strip_defaults(out)
    return out


def _strip_defaults(node: dict[str, Any]) -> None:
    node.pop("default", None)
    for child in node.get("properties", {}).values():
        _strip_defaults(child)
    if isinstance(node.get("items"), dict):
        _strip_defaults(node["items"])


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    schema = {
        "type": "object",
        "description": m.RLJob.__doc__,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
        "required": ["spec"],
        "x-kubernetes-validations": [dict(r) for r in m.RLJob.cel_rules],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "hexrl", "app.kubernetes.io/part-of": "hexrl"},
        },
        "spec": {
            "group": m.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": m.KIND,
                "listKind": f"{m.KIND}List",
                "plural": m.PLURAL,
                "singular": m.SINGULAR,
                "shortNames": list(m.SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": m.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


HEADER = "# GENERATED by `hexrl crds generate` from hexrl.api.models — do not edit; run `make crds`.\n"


def crd_yaml() -> str:
    """The CRD as YAML text (stable key order, so diffs are meaningful)."""
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=120, allow_unicode=True)


# ---------------------------------------------------------------------------------- GPUCalibration

CALIBRATION_FILENAME = f"{gc.CRD_NAME}.yaml"

CALIBRATION_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Learning", "type": "boolean", "jsonPath": ".status.learning",
     "description": "Whether fitted factors follow new observations (spec.learning)."},
    {"name": "Cells", "type": "integer", "jsonPath": ".status.cells",
     "description": "(GPU type, phase) cells with a factor."},
    {"name": "Factors", "type": "string", "jsonPath": ".status.summary",
     "description": "Factor per cell, with the fit's confidence or 'pinned'."},
    {"name": "Updated", "type": "date", "jsonPath": ".status.updated", "description": "Last status write."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _calibration_schema() -> dict[str, Any]:
    spec_json = gc.GPUCalibrationSpec.model_json_schema(by_alias=True, mode="validation")
    spec = _Converter(spec_json, gc.GPUCalibrationSpec).convert(spec_json, "GPUCalibrationSpec")
    status_json = gc.GPUCalibrationStatus.model_json_schema(by_alias=True, mode="serialization")
    status = _Converter(status_json, gc.GPUCalibrationStatus).convert(status_json, "GPUCalibrationStatus")
    _strip_defaults(status)
    spec["description"] = "What a platform team controls: learning on or off, and pinned factors."
    status["description"] = "Written by the operator: the factors, their evidence and recent observations."
    return {
        "type": "object",
        "description": gc.GPUCalibration.__doc__,
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
            "spec": {**spec, "default": {}}, "status": status,
        },
        "x-kubernetes-validations": [{
            "rule": f"self.metadata.name == '{gc.DEFAULT_NAME}'",
            "message": f"the operator reads one GPUCalibration, named {gc.DEFAULT_NAME}",
        }],
    }


def calibration_crd() -> dict[str, Any]:
    """The cluster-scoped GPUCalibration CustomResourceDefinition."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": gc.CRD_NAME,
            "labels": {"app.kubernetes.io/name": "hexrl", "app.kubernetes.io/part-of": "hexrl"},
        },
        "spec": {
            "group": m.GROUP,
            "scope": "Cluster",
            "names": {
                "kind": gc.KIND, "listKind": f"{gc.KIND}List", "plural": gc.PLURAL, "singular": gc.SINGULAR,
                "shortNames": list(gc.SHORT_NAMES), "categories": ["hexrl"],
            },
            "versions": [{
                "name": m.VERSION, "served": True, "storage": True, "subresources": {"status": {}},
                "additionalPrinterColumns": CALIBRATION_PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": _calibration_schema()},
            }],
        },
    }


CALIBRATION_HEADER = (
    "# GENERATED by `hexrl crds generate` from hexrl.api.gpucalibration — do not edit; run `make crds`.\n"
)


def calibration_crd_yaml() -> str:
    """The GPUCalibration CRD as YAML text."""
    return CALIBRATION_HEADER + yaml.safe_dump(calibration_crd(), sort_keys=False, width=120, allow_unicode=True)


def generated_crds() -> dict[str, str]:
    """File name → text of every CRD hexrl generates (what `hexrl crds generate` writes)."""
    return {FILENAME: crd_yaml(), CALIBRATION_FILENAME: calibration_crd_yaml()}


def peering_crds() -> list[dict[str, Any]]:
    """kopf's peering CRDs (ClusterKopfPeering, KopfPeering; group kopf.dev): the objects through which
    operator replicas elect a leader. The same documents as `manifests/operator/peering.yaml` (a test
    checks), here so that `hexrl operator` can install them without the repository at hand."""

    def one(kind: str, plural: str, scope: str) -> dict[str, Any]:
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.kopf.dev"},
            "spec": {
                "group": "kopf.dev",
                "scope": scope,
                "names": {"kind": kind, "plural": plural, "singular": plural[:-1]},
                "versions": [{
                    "name": "v1", "served": True, "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}},
                }],
            },
        }

    return [one("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"), one("KopfPeering", "kopfpeerings", "Namespaced")]
