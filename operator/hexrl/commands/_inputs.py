"""Reading the CLI's input files (inventories, RLJobs, GPU catalogs, calibration profiles, traces): bounded, and with one sentence per problem.

Every file a `hexrl` command takes goes through `read_text` (a regular file, at most `MAX_FILE_BYTES`, UTF-8) and,
when it is YAML or JSON, `parse_yaml` (nesting at most `MAX_DEPTH` deep and at most `MAX_NODES` values, checked on
the parser's event stream before any object is built, so neither a RecursionError nor an alias bomb can happen;
then every number must be finite). Each problem raises `InputError`, whose message names the file, the problem and
what to do; the commands print it and exit with `EXIT_BAD_INPUT`.

Exit status of `hexrl plan`, `simulate` and `run` (also in README.md):
0 success; 1 bad input (a file or value the user must fix; the message says which and how); 2 usage (an unknown
option or a missing argument: click's own); 3 infeasible (the plan's reason says what to change).
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2
"""click's own status for a command line it cannot parse."""
EXIT_INFEASIBLE = 3

MAX_FILE_BYTES = 8 * 1024 * 1024
"""Largest input file read, bytes (8 MiB). An RLJob is a few KiB and an inventory of the largest problem the planner
accepts (sched.limits: 32 pools) under 10 KiB; 8 MiB leaves room for comments and generated files while keeping
the parse to seconds and the memory bounded (a 50 MB inventory took 40 s; /dev/zero never ended)."""
MAX_DEPTH = 32
"""Deepest nesting of mappings and lists. hexrl's files nest at most 6 deep; PyYAML builds objects recursively and
would fail with a RecursionError near 1,000."""
MAX_NODES = 1_000_000
"""Most values (scalars, lists, mappings) in one file, counting each use of a YAML alias as a copy of what it names:
a few aliased lists nested in each other ("billion laughs") would otherwise expand to billions."""


class InputError(ValueError):
    """An input file the user must fix; the message says what is wrong, where, and what to do."""


def read_text(path: Path, what: str) -> str:
    """The text of `path`: a regular file of at most MAX_FILE_BYTES bytes, decoded as UTF-8 (a leading BOM dropped)."""
    name = f"the {what} file {str(path)!r}"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError(f"cannot read {name}: it does not exist; check the path") from None
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode  # of what was opened, not of what the path named a moment before
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise InputError(f"cannot read {name}: it is a directory; pass a YAML file")
        raise InputError(
            f"cannot read {name}: it is not a regular file (a device, pipe or socket); save the content to a "
            "file and pass that"
        )
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(
            f"{name} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, the most hexrl reads; hexrl's files are a "
            "few KiB, so check that this is the right file"
        )
    return _decode(data, name)


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{name} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}) is not "
            "valid UTF-8; save the file as UTF-8"
        ) from None


def check_structure(text: str, name: str) -> None:
    """Refuse YAML/JSON text nested deeper than MAX_DEPTH, with more than MAX_NODES values (aliases expanded) or an
    alias inside what it names, by walking the parser's events (no recursion, no objects built)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    depth, nodes = 0, 0
    open_anchors: list[tuple[str | None, int]] = []  # (anchor, node count at its start) per open collection
    sizes: dict[str, int] = {}
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in sizes:
                    raise InputError(
                        f"{name} uses the alias *{event.anchor} inside the value it names (a value that contains "
                        "itself); write the value out"
                    )
                nodes += sizes[event.anchor]
            elif isinstance(event, yaml.ScalarEvent):
                nodes += 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
            elif isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                nodes += 1
                if depth > MAX_DEPTH:
                    raise InputError(_too_deep(name, event.start_mark))
                open_anchors.append((event.anchor, nodes))
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
                anchor, start = open_anchors.pop()
                if anchor is not None:
                    sizes[anchor] = nodes - start + 1
            if nodes > MAX_NODES:
                raise InputError(
                    f"{name} holds more than {MAX_NODES:,} values (counting each use of an alias as a copy); "
                    "hexrl's files hold far fewer, so check the file"
                )
    except yaml.YAMLError as exc:
        raise InputError(_yaml_problem(exc, name)) from None
    except UnicodeError:  # text from elsewhere than read_text (which decodes strictly) may hold lone surrogates
        raise InputError(f"{name} is not UTF-8 text (it holds a lone surrogate); save it as UTF-8") from None


def _yaml_problem(exc: Exception, name: str) -> str:
    import yaml

    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow, e.g. a control character
        return (
            f"{name} holds the character #x{exc.character if isinstance(exc.character, int) else ord(exc.character):04x} "
            f"at character {exc.position}, which YAML does not allow ({exc.reason}); remove it"
        )
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or exc
    if "maximum nesting depth" in str(problem):  # libyaml's own limit (1,000) can trip before ours on a flow list
        return _too_deep(name, mark)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{name} is not valid YAML{where}: {problem}; fix the syntax there"


def _too_deep(name: str, mark: Any) -> str:
    line = f" (at line {mark.line + 1})" if mark is not None else ""
    return (
        f"{name} nests lists and mappings more than {MAX_DEPTH} deep{line}; hexrl's files need at most a few levels, "
        "so check the file"
    )


def parse_yaml(text: str, name: str) -> Any:
    """The parsed YAML (or JSON) document in `text`, after `check_structure`; every number in it is finite."""
    import yaml

    check_structure(text, name)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise InputError(_yaml_problem(exc, name)) from None
    except (ValueError, OverflowError) as exc:  # e.g. a 5,000-digit integer or a timestamp with month 13
        # Python's own advice (raise the integer digit limit) is not the user's fix: keep the first clause only.
        raise InputError(f"{name} holds a value that cannot be read ({str(exc).split(';')[0]}); fix that value") from None
    check_finite(doc, name)
    return doc


def check_finite(doc: Any, name: str) -> None:
    """Refuse a document holding a non-finite number (.inf, .nan, or 1e400 which YAML reads as infinity), naming the
    field; iterative, and each collection is visited once (aliases share objects)."""
    stack: list[tuple[str, Any]] = [("", doc)]
    seen: set[int] = set()
    while stack:
        where, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            field = where or "the document"
            raise InputError(
                f"{name}: {field} is {_yaml_float(value)}; numbers must be finite, so give a finite value"
            )
        if isinstance(value, dict | list):
            if id(value) in seen:
                continue
            seen.add(id(value))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, float) and not math.isfinite(key):
                    raise InputError(f"{name}: {where or 'the document'} has the key {_yaml_float(key)}; use a name")
                stack.append((_child(where, key, isinstance(value, list)), item))


def _yaml_float(value: float) -> str:
    return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")


def _child(where: str, key: Any, index: bool) -> str:
    if index:
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else str(key)


def read_yaml(path: Path, what: str) -> Any:
    """The parsed YAML/JSON of `path` (bounded, see the module doc); `what` (e.g. "job") names the file in messages."""
    return parse_yaml(read_text(path, what), f"the {what} file {str(path)!r}")


def _check_kind(data: Any, path: Path, kind: str, api_version: str, what: str) -> None:
    """Refuse a document that is not a mapping or whose apiVersion/kind is missing or not `api_version`/`kind`."""
    if not isinstance(data, dict):
        raise InputError(
            f"{path}: the {what} file must be a YAML mapping starting with apiVersion: {api_version} and kind: {kind}; "
            f"it holds {'nothing' if data is None else 'a ' + type(data).__name__}"
        )
    for field, want in (("kind", kind), ("apiVersion", api_version)):  # a wrong kind says more than a missing version
        got = data.get(field)
        if got is None:
            raise InputError(f"{path}: {field} is missing; {_a(kind)} file says {field}: {want}")
        if got != want:
            raise InputError(f"{path}: {field} is {got!r}; expected {want} (is this {_a(kind)} file?)")


def _a(kind: str) -> str:
    return ("an " if kind[0] in "AEIOR" else "a ") + kind


def load_inventory(path: Path) -> Any:
    """A ClusterInventory file → `hexrl.sched.Cluster` (within `hexrl.sched.limits.ProblemLimits`)."""
    from hexrl.sched import InventoryError, parse_inventory
    from hexrl.sched.inventory import API_VERSION, KIND

    data = read_yaml(path, "inventory")
    _check_kind(data, path, KIND, API_VERSION, "inventory")
    try:
        return parse_inventory(data)
    except InventoryError as exc:
        raise InputError(f"{path}: {exc}") from None


def load_job(path: Path) -> Any:
    """An RLJob file → `hexrl.api.models.RLJob` (validation errors name the field, first six shown)."""
    from pydantic import ValidationError

    from hexrl.api.models import API_VERSION, KIND, RLJob

    data = read_yaml(path, "job")
    _check_kind(data, path, KIND, API_VERSION, "job")
    try:
        return RLJob.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors()[:6]
        ]
        raise InputError(f"{path}: invalid RLJob: " + "; ".join(problems)) from None


def load_gpu_catalog(path: Path) -> dict[str, object]:
    """The override mapping in a `--gpu-catalog` file (GPU name → fields); empty for an empty file."""
    data = read_yaml(path, "GPU catalog")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(
            f"{path}: the GPU catalog file must be a mapping of GPU name → fields, e.g. "
            "`B200: {tflopsBf16: 2250, hbmGB: 192, ...}`"
        )
    return {str(k): v for k, v in data.items()}


def load_profile(path: Path, catalog: Any) -> Any:
    """A CalibrationProfile file → `hexrl.sched.calibration.CalibrationProfile` (GPU names through `catalog`)."""
    from hexrl.sched.calibration import API_VERSION, KIND, CalibrationError, parse_profile

    data = read_yaml(path, "calibration profile")
    _check_kind(data, path, KIND, API_VERSION, "calibration profile")
    try:
        return parse_profile(data, catalog)
    except CalibrationError as exc:
        raise InputError(f"{path}: {exc}") from None


def load_profiles(paths: list[Path], cluster: Any) -> Any:
    """`PlannerSettings` whose cost model is calibrated by the profiles in `paths` (GPU names through the cluster's
    catalog), or None without any (the defaults, unchanged). A GPU type and phase in two files is refused."""
    if not paths:
        return None
    from hexrl.sched import CostModelSettings, PlannerSettings
    from hexrl.sched.calibration import CalibrationProfile
    from hexrl.sched.searchspace import cluster_catalog

    catalog = cluster_catalog(cluster)
    where: dict[tuple[str, str], Path] = {}
    entries = []
    for path in paths:
        for e in load_profile(path, catalog).entries:
            if (e.gpu, e.phase) in where:
                raise InputError(
                    f"{path}: the {e.gpu} {e.phase} factor is also in {str(where[(e.gpu, e.phase)])!r}; pass one of them"
                )
            where[(e.gpu, e.phase)] = path
            entries.append(e)
    return PlannerSettings(cost=CostModelSettings(calibration=CalibrationProfile(tuple(entries))))
