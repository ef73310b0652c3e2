"""The GPU catalog: hardware numbers and default prices per GPU type, looked up by name or alias.

The data lives in the versioned file `gpu_catalog.yaml` next to this module (read once at import
through `importlib.resources`; no other I/O). Each entry gives dense BF16 TFLOPS, HBM capacity and
bandwidth, intra-/inter-node link bandwidth and default on-demand/spot $/GPU-hour, with the sources
listed in the file.

Names are matched case-insensitively after normalisation (`_key`): every character that is not a
letter or digit is dropped, so `nvidia-h100-80gb-hbm3`, `NVIDIA_H100_80GB_HBM3` and the GPU feature
discovery product `NVIDIA-H100-80GB-HBM3` are the same key. GFD's `-SHARED` suffix (time-slicing) is
ignored. A MIG slice (`…-MIG-1g.10gb`) is not a whole GPU and is not matched.

The catalog is immutable; `Catalog.with_overrides` returns a new one in which fields of known types
are replaced and new types are added (from an inventory's `catalog:` section or a job).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from importlib import resources
from typing import Any

import yaml

__all__ = [
    "DEFAULT_CATALOG",
    "Catalog",
    "CatalogError",
    "GPUSpec",
    "UnknownGPUError",
    "canonical_gpu_name",
    "lookup_gpu",
]


class CatalogError(ValueError):
    """A catalog entry or override is malformed; the message names the field."""


class UnknownGPUError(KeyError):
    """A GPU name that neither a catalog name nor an alias matches."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__(name)

    def __str__(self) -> str:
        return (
            f"GPU type {self.name!r} is not in the GPU catalog; known types: {', '.join(self.known)}. "
            "Use one of these names, or add the type to the inventory's `catalog:` section."
        )


@dataclass(frozen=True)
class GPUSpec:
    """One GPU type. Units are in the field names; see gpu_catalog.yaml for the sources."""

    name: str
    """Canonical catalog name, e.g. H800."""
    tflops_bf16: float
    """Dense BF16 tensor-core peak, TFLOPS."""
    hbm_gb: float
    """Device memory, GB (1e9 bytes)."""
    hbm_tbps: float
    """Device memory bandwidth, TB/s."""
    intra_node_gbps: float
    """GPU-to-GPU bandwidth inside a node, GB/s per direction per GPU."""
    inter_node_gbps: float
    """Default node-to-node bandwidth within one pool, GB/s per direction."""
    price_on_demand: float
    """Default $/GPU-hour on on-demand capacity."""
    price_spot: float
    """Default $/GPU-hour on spot capacity."""
    vendor: str = "nvidia"
    aliases: tuple[str, ...] = ()
    train_mfu: float | None = None
    """Measured training FLOPs utilisation on this GPU type (0–1, FLOPs counted as the cost model counts them,
    recompute included), fitted to the published runs named in `efficiency_sources`. None: the cost model's
    default `CostModelSettings.train_mfu`."""
    prefill_mfu: float | None = None
    """Measured prefill FLOPs utilisation on this GPU type (0–1; None: `CostModelSettings.prefill_mfu`)."""
    efficiency_sources: tuple[str, ...] = ()
    """Ids of the measurements in `measurement_sources.yaml` the efficiencies above are fitted to (a test
    keeps each id pointing at a source of the same GPU type and phase)."""

    def price(self, spot: bool) -> float:
        """Default $/GPU-hour for the capacity type."""
        return self.price_spot if spot else self.price_on_demand


# Wire name (YAML, camelCase) → dataclass field, for entries and overrides.
_WIRE = {
    "tflopsBf16": "tflops_bf16",
    "hbmGB": "hbm_gb",
    "hbmTBps": "hbm_tbps",
    "intraNodeGBps": "intra_node_gbps",
    "interNodeGBps": "inter_node_gbps",
    "priceOnDemand": "price_on_demand",
    "priceSpot": "price_spot",
    "vendor": "vendor",
    "aliases": "aliases",
    "trainMfu": "train_mfu",
    "prefillMfu": "prefill_mfu",
    "efficiencySources": "efficiency_sources",
}
_NUMERIC = tuple(f.name for f in fields(GPUSpec) if f.type in ("float", float))
_EFFICIENCIES = ("train_mfu", "prefill_mfu")
"""Optional utilisations: a fraction in (0, 1]."""
_STRING_LISTS = ("aliases", "efficiency_sources")
_PRICES = ("price_on_demand", "price_spot")
"""Numeric fields that may be 0 (a free GPU); every other one divides a cost-model estimate and must be positive."""


def _key(name: str) -> str:
    """Normalised lookup key: lower case, letters and digits only, GFD's sharing suffix removed."""
    k = re.sub(r"[^a-z0-9]", "", name.lower())
    return k.removesuffix("shared") if k.endswith("shared") and len(k) > 6 else k


def _spec_from_wire(name: str, raw: Any, base: GPUSpec | None, where: str) -> GPUSpec:
    """Build (or override) a GPUSpec from a camelCase mapping, naming the bad field on error."""
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{where} must be a mapping of GPU fields (tflopsBf16, hbmGB, …)")
    values: dict[str, Any] = {}
    for wire, value in raw.items():
        attr = _WIRE.get(str(wire))
        if attr is None:
            raise CatalogError(f"{where}.{wire} is not a GPU catalog field; known fields: {', '.join(_WIRE)}")
        if attr in _NUMERIC:
            values[attr] = _number(value, attr, f"{where}.{wire}")
        elif attr in _EFFICIENCIES:
            values[attr] = _fraction(value, f"{where}.{wire}")
        elif attr in _STRING_LISTS:
            if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
                raise CatalogError(f"{where}.{wire} must be a list of strings")
            values[attr] = tuple(value)
        else:
            values[attr] = str(value)
    if base is not None:
        return replace(base, **values)
    missing = [w for w, a in _WIRE.items() if a in _NUMERIC and a not in values]
    if missing:
        raise CatalogError(f"{where} is a new GPU type and needs {', '.join(missing)}")
    return GPUSpec(name=name, **values)


def _number(value: Any, attr: str, where: str) -> float:
    """A catalog number: finite, positive (non-negative for prices); true/false and numbers too large for a float
    are refused (the cost model divides by TFLOPS, memory and bandwidths)."""
    what = "a non-negative number (a $/GPU-hour price)" if attr in _PRICES else "a positive number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CatalogError(f"{where} must be {what}, got {_short(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or number < 0 or (number == 0 and attr not in _PRICES):
        raise CatalogError(f"{where} must be {what}, got {_short(value)}")
    return number


def _fraction(value: Any, where: str) -> float:
    """A utilisation: a number in (0, 1] (the cost model divides by it; above 1 would beat the hardware's peak)."""
    number = _number(value, "utilisation", where)
    if number > 1:
        raise CatalogError(f"{where} must be a fraction of peak in (0, 1], got {_short(value)}")
    return number


def _short(value: Any) -> str:
    """repr(value) cut to 60 characters (a 5,000-digit integer cannot even be printed in full)."""
    try:
        text = repr(value)
    except ValueError:
        return "a number too large to print"
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Catalog:
    """An immutable set of GPU specs with name/alias lookup."""

    version: str
    sources: tuple[str, ...]
    gpus: tuple[GPUSpec, ...]

    def __post_init__(self) -> None:
        index: dict[str, str] = {}
        for g in self.gpus:
            for n in (g.name, *g.aliases):
                index[_key(n)] = g.name
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_by_name", {g.name: g for g in self.gpus})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.gpus)

    def canonical(self, name: str) -> str | None:
        """The catalog name for `name` (a name, an alias or a GFD product string), or None."""
        index: dict[str, str] = self._index  # type: ignore[attr-defined]
        k = _key(name)
        if k in index:
            return index[k]
        # GFD products carry the vendor and sometimes a form factor; retry without the vendor prefix.
        for prefix in ("nvidia", "amd", "amdinstinct", "instinct"):
            if k.startswith(prefix) and k[len(prefix) :] in index:
                return index[k[len(prefix) :]]
        return None

    def lookup(self, name: str) -> GPUSpec | None:
        """The spec for a name or alias, or None when unknown."""
        c = self.canonical(name)
        return None if c is None else self._by_name[c]  # type: ignore[attr-defined]

    def get(self, name: str) -> GPUSpec:
        """The spec for a name or alias; raises UnknownGPUError (with the known names) when unknown."""
        spec = self.lookup(name)
        if spec is None:
            raise UnknownGPUError(name, self.names)
        return spec

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.canonical(name) is not None

    def with_overrides(self, overrides: Mapping[str, Any] | None, where: str = "catalog") -> Catalog:
        """A new catalog with fields of known types replaced and new types added.

        `overrides` maps a GPU name to camelCase fields, e.g. `{"H800": {"tflopsBf16": 989}}`; a name
        the catalog does not know becomes a new type and must give every numeric field.
        """
        if not overrides:
            return self
        if not isinstance(overrides, Mapping):
            raise CatalogError(f"{where} must be a mapping from GPU name to fields")
        gpus = {g.name: g for g in self.gpus}
        for name, raw in overrides.items():
            base = self.lookup(str(name))
            spec = _spec_from_wire(str(name), raw, base, f"{where}.{name}")
            gpus[spec.name] = spec
        return Catalog(version=f"{self.version}+overrides", sources=self.sources, gpus=tuple(gpus.values()))

    def with_specs(self, specs: Iterable[GPUSpec]) -> Catalog:
        """A new catalog with these specs added or replacing the same-named ones."""
        specs = tuple(specs)
        if not specs:
            return self
        gpus = {g.name: g for g in self.gpus}
        for s in specs:
            gpus[s.name] = s
        return Catalog(version=f"{self.version}+overrides", sources=self.sources, gpus=tuple(gpus.values()))


def load_catalog(data: Mapping[str, Any]) -> Catalog:
    """Build a catalog from the parsed YAML document (same format as gpu_catalog.yaml)."""
    gpus = data.get("gpus")
    if not isinstance(gpus, Mapping) or not gpus:
        raise CatalogError("catalog.gpus must be a non-empty mapping")
    specs = tuple(_spec_from_wire(str(n), raw, None, f"gpus.{n}") for n, raw in gpus.items())
    return Catalog(
        version=str(data.get("version", "unversioned")),
        sources=tuple(str(s) for s in data.get("sources", ()) or ()),
        gpus=specs,
    )


def _load_default() -> Catalog:
    text = resources.files("hexrl.sched").joinpath("gpu_catalog.yaml").read_text(encoding="utf-8")
    return load_catalog(yaml.safe_load(text))


DEFAULT_CATALOG: Catalog = _load_default()
"""The catalog shipped with hexrl (gpu_catalog.yaml)."""


def lookup_gpu(name: str, catalog: Catalog | None = None) -> GPUSpec | None:
    """The spec of a GPU by name, alias or GFD product string (default catalog), or None."""
    return (catalog or DEFAULT_CATALOG).lookup(name)


def canonical_gpu_name(name: str, catalog: Catalog | None = None) -> str | None:
    """The catalog name for a GPU name, alias or GFD product string, or None when unknown."""
    return (catalog or DEFAULT_CATALOG).canonical(name)
