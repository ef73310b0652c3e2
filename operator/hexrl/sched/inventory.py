"""Cluster inventory files (kind ClusterInventory) → the planner's `Cluster` snapshot.

An inventory describes GPU node pools the way DESIGN.md §4 shows them:

    apiVersion: hexrl.dev/v1alpha1
    kind: ClusterInventory
    interPoolGBps: 1.5
    catalog: {H800: {tflopsBf16: 989}}      # optional: override or add GPU types
    pools:
      - {name: h800-ondemand, gpu: H800, gpusPerNode: 8, nodes: 3, spot: false, zone: zone-a,
         pricePerGpuHour: 5.28, interNodeGBps: 5}
      - {name: h20-spot, gpu: H20, gpusPerNode: 8, nodes: 3, spot: true, preemptionsPerNodeHour: 0.05}

`parse_inventory(data)` takes the parsed YAML (the caller reads the file) and returns a `Cluster` whose
nodes are named `<pool>-<i>` (i from 0). Every problem raises `InventoryError` with a message that
names the field and says what is expected, e.g. "pools[1].gpusPerNode must be a positive integer".
GPU names are resolved through the catalog (aliases and GPU-feature-discovery product strings are
accepted) and stored under their canonical catalog name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from hexrl.sched.catalog import DEFAULT_CATALOG, Catalog, CatalogError
from hexrl.sched.limits import DEFAULT_LIMITS, ProblemLimits, cluster_problem
from hexrl.sched.types import Cluster, NodeInfo, PoolInfo

__all__ = ["ClusterInventory", "InventoryError", "PoolSpec", "cluster_to_inventory", "parse_inventory"]

API_VERSION = "hexrl.dev/v1alpha1"
KIND = "ClusterInventory"


class InventoryError(ValueError):
    """The inventory is malformed; the message names the field and what to do."""


class _Model(BaseModel):
    # allow_inf_nan=False: "Infinity" or .nan is never a price, a bandwidth or a rate.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, allow_inf_nan=False
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """true/false is not a number: pydantic would read `nodes: true` as 1."""
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            types = get_args(annotation) or (annotation,)
            if bool not in types and (int in types or float in types):
                raise ValueError("must be a number, not true or false")
        return value


class PoolSpec(_Model):
    """One node pool of an inventory file."""

    name: str = Field(..., min_length=1, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    gpu: str = Field(..., min_length=1)
    gpus_per_node: int = Field(..., gt=0, le=64)
    nodes: int = Field(..., ge=0, le=100_000)
    spot: bool = False
    zone: str = ""
    price_per_gpu_hour: float | None = Field(None, ge=0)
    inter_node_gbps: float | None = Field(None, alias="interNodeGBps", gt=0)
    preemptions_per_node_hour: float = Field(0.0, ge=0)
    gpu_memory_gb: float | None = Field(None, alias="gpuMemoryGB", gt=0)
    real: bool = False


class ClusterInventory(_Model):
    """The whole inventory document."""

    api_version: Literal["hexrl.dev/v1alpha1"] = Field("hexrl.dev/v1alpha1", alias="apiVersion")
    kind: Literal["ClusterInventory"] = "ClusterInventory"
    metadata: dict[str, Any] | None = None
    inter_pool_gbps: float = Field(1.5, alias="interPoolGBps", gt=0)
    catalog: dict[str, dict[str, Any]] | None = None
    pools: list[PoolSpec] = Field(..., min_length=1)

    @field_validator("pools")
    @classmethod
    def _unique_names(cls, pools: list[PoolSpec]) -> list[PoolSpec]:
        seen: set[str] = set()
        for i, p in enumerate(pools):
            if p.name in seen:
                raise ValueError(f"pools[{i}].name {p.name!r} is used twice; pool names must be unique")
            seen.add(p.name)
        return pools


# pydantic error type → what the user should write instead.
_EXPECT = {
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "string_pattern_mismatch": "must be a DNS label (lower-case letters, digits, '-' and '.')",
    "missing": "is required",
    "finite_number": "must be a finite number",
    "extra_forbidden": "is not a known field",
    "literal_error": "must be {expected}",
    "list_type": "must be a list",
    "too_short": "must not be empty",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
}


_INTEGER_FIELDS = {"gpusPerNode", "nodes"}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "inventory"


def _describe(err: Mapping[str, Any]) -> str:
    """One sentence for one pydantic error, naming the field."""
    where = _path(tuple(err.get("loc", ())))
    ctx = dict(err.get("ctx") or {})
    template = _EXPECT.get(str(err.get("type")))
    if err.get("type") in ("greater_than", "greater_than_equal") and ctx.get("gt", ctx.get("ge")) in (0, 1):
        # The common case reads better as "a positive integer/number".
        kind = "integer" if str(err.get("loc", ("",))[-1]) in _INTEGER_FIELDS else "number"
        what = "a positive" if err["type"] == "greater_than" or ctx.get("ge") == 1 else "a non-negative"
        text = f"must be {what} {kind}"
    elif template is not None:
        try:
            text = template.format(**ctx)
        except (KeyError, IndexError):
            text = str(err.get("msg", "is invalid"))
    else:
        text = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        if text.startswith("pools["):
            return text
    got = err.get("input")
    suffix = "" if err.get("type") in ("missing", "extra_forbidden") or isinstance(got, dict | list) else f" (got {_short(got)})"
    return f"{where} {text}{suffix}"


def _short(value: Any) -> str:
    """repr(value) cut to 60 characters (a 5,000-digit integer cannot even be printed in full)."""
    try:
        text = repr(value)
    except ValueError:
        return "a number too large to print"
    return text if len(text) <= 60 else text[:57] + "..."


def _validation_message(exc: ValidationError) -> str:
    errors = exc.errors()
    lines = [_describe(e) for e in errors[:5]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(lines) + more


def parse_inventory(data: Any, catalog: Catalog | None = None, limits: ProblemLimits = DEFAULT_LIMITS) -> Cluster:
    """Validate a parsed inventory document and build the `Cluster` snapshot.

    Raises `InventoryError` naming the offending field for: a document that is not a mapping, the
    wrong apiVersion/kind, unknown or missing fields, non-positive counts, true/false or a non-finite
    number where a number belongs, an unknown GPU type, a bad `catalog:` override, duplicate pool names,
    or more pools or nodes than `limits` allow (checked before any node is built).
    """
    inv = _validated(data, limits)
    base = catalog or DEFAULT_CATALOG
    try:
        cat = base.with_overrides(inv.catalog)
    except CatalogError as exc:
        raise InventoryError(f"invalid inventory: {exc}") from None
    pools = tuple(_pool_info(i, p, cat) for i, p in enumerate(inv.pools))
    nodes = tuple(
        NodeInfo(name=f"{p.name}-{k}", pool=p.name, gpu=info.gpu, gpus=p.gpus_per_node, spot=p.spot, zone=p.zone)
        for p, info in zip(inv.pools, pools, strict=True)
        for k in range(p.nodes)
    )
    overrides = tuple(cat.lookup(n) for n in (inv.catalog or {}))
    return Cluster(
        pools=pools,
        nodes=nodes,
        inter_pool_gbps=inv.inter_pool_gbps,
        gpu_overrides=tuple(s for s in overrides if s is not None),
    )


def _validated(data: Any, limits: ProblemLimits) -> ClusterInventory:
    """The document as a `ClusterInventory`, refused when malformed or beyond the planner's limits."""
    if not isinstance(data, Mapping):
        raise InventoryError(
            "the inventory must be a YAML mapping with apiVersion: hexrl.dev/v1alpha1, kind: ClusterInventory "
            f"and pools: [...]; got {type(data).__name__}"
        )
    try:
        inv = ClusterInventory.model_validate(dict(data))
    except ValidationError as exc:
        raise InventoryError(f"invalid inventory: {_validation_message(exc)}") from None
    too_large = cluster_problem(len(inv.pools), sum(p.nodes for p in inv.pools), limits)
    if too_large is not None:
        raise InventoryError(f"inventory too large: {too_large}")
    return inv


def _pool_info(i: int, p: PoolSpec, cat: Catalog) -> PoolInfo:
    """Pool `i` of the inventory with its GPU type resolved in `cat` (canonical name)."""
    spec = cat.lookup(p.gpu)
    if spec is None:
        raise InventoryError(
            f"invalid inventory: pools[{i}].gpu {p.gpu!r} is not in the GPU catalog; known types: "
            f"{', '.join(cat.names)}. Use one of these, or describe the type under `catalog:`."
        )
    if p.preemptions_per_node_hour > 0 and not p.spot:
        raise InventoryError(
            f"invalid inventory: pools[{i}].preemptionsPerNodeHour is set but pools[{i}].spot is false; "
            "only spot pools are preempted (set spot: true or remove the field)"
        )
    return PoolInfo(
        name=p.name,
        gpu=spec.name,
        gpus_per_node=p.gpus_per_node,
        spot=p.spot,
        zone=p.zone,
        price_per_gpu_hour=p.price_per_gpu_hour,
        inter_node_gbps=p.inter_node_gbps,
        preemptions_per_node_hour=p.preemptions_per_node_hour,
        gpu_memory_gb=p.gpu_memory_gb,
        real=p.real,
    )


def cluster_to_inventory(cluster: Cluster) -> dict[str, Any]:
    """The inverse view (pools with node counts) as a camelCase document, e.g. for `--format yaml`."""
    pools = []
    for p in cluster.pools:
        entry: dict[str, Any] = {
            "name": p.name,
            "gpu": p.gpu,
            "gpusPerNode": p.gpus_per_node,
            "nodes": len(cluster.nodes_of(p.name)),
            "spot": p.spot,
        }
        if p.zone:
            entry["zone"] = p.zone
        if p.price_per_gpu_hour is not None:
            entry["pricePerGpuHour"] = p.price_per_gpu_hour
        if p.inter_node_gbps is not None:
            entry["interNodeGBps"] = p.inter_node_gbps
        if p.preemptions_per_node_hour:
            entry["preemptionsPerNodeHour"] = p.preemptions_per_node_hour
        if p.gpu_memory_gb is not None:
            entry["gpuMemoryGB"] = p.gpu_memory_gb
        if p.real:
            entry["real"] = True
        pools.append(entry)
    return {"apiVersion": API_VERSION, "kind": KIND, "interPoolGBps": cluster.inter_pool_gbps, "pools": pools}
