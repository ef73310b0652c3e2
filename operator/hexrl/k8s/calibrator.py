"""Online calibration in the operator: observed work in, the cluster's GPUCalibration object and profile out.

One `Calibrator` per operator process, shared by every job:

- `observe(uid, spec, cluster, plan, progress)` takes a job's `/v1/progress` (its `observedWork` sums per
  (GPU type, phase)), turns the difference to the job's previous read into observations next to the cost
  model's uncalibrated prediction at the job's planned operating point (`hexrl.sched.onlinecalibration`),
  appends them to the cell's bounded window and re-fits (`hexrl.sched.calibration.fit_calibration`: catalog
  prior, outlier rejection, confidence growing with observed work);
- `profile()` is what the planner uses: pinned factors (spec.pinned of the object, never re-fitted) and
  the fitted ones of the other cells;
- `flush()` writes the object's status — the factors, their evidence and each cell's window, so the fit
  survives a restart — with one merge-patch at most per progress poll interval, after re-reading the spec
  (a platform team's pins and `learning` switch) with one GET;
- `load()` (at start-up, else on the first progress poll) reads the object back, or creates it when missing. Without the GPUCalibration CRD
  (a cluster that installed only the RLJob CRD) calibration still works in memory and says so once.

With `spec.learning: false` new observations are ignored and the factors stay as they are. Thread-safe:
progress polls of several jobs run on executor threads.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from hexrl.api import gpucalibration as gc
from hexrl.api.models import API_VERSION, RLJobSpec
from hexrl.k8s import metrics
from hexrl.k8s.kubeapi import ApiError, KubeApi
from hexrl.k8s.settings import OperatorSettings
from hexrl.sched.calibration import (
    CalibrationFit,
    CalibrationProfile,
    Observation,
    ProfileEntry,
    fit_calibration,
)
from hexrl.sched.costmodel import CostModelSettings
from hexrl.sched.onlinecalibration import (
    Cell,
    WorkSum,
    advance_base,
    effective_profile,
    observations_between,
    parse_observed_work,
    predicted_work_rates,
)
from hexrl.sched.types import Cluster, Plan

__all__ = ["Calibrator"]

log = logging.getLogger(__name__)

WRITE_SLACK = 0.9
"""A write is due once this share of the poll interval has passed since the last: timers of different jobs
jitter, and a strict whole interval would skip every other cycle."""


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Calibrator:
    """The operator's online calibration (see the module docstring)."""

    def __init__(self, api: KubeApi | Any, settings: OperatorSettings, clock: Callable[[], float] = time.monotonic,
                 ) -> None:
        self.api = api
        self.settings = settings
        self.s = settings.calibration
        self.clock = clock
        self._lock = threading.RLock()
        self.pinned = CalibrationProfile()
        self.learning = True
        self.windows: dict[Cell, deque[gc.CalibrationObservation]] = {}
        self.fit: CalibrationFit | None = None
        self.updated: dict[Cell, str] = {}
        self._last: dict[str, dict[Cell, WorkSum]] = {}
        self._loaded = False
        """The object was read back (or created); until then calibration lives in memory only."""
        self._retry_at = -math.inf
        self._said_missing = False
        self._dirty = False
        self._last_write = -math.inf

    # ------------------------------------------------------------------------------------ reading

    def profile(self) -> CalibrationProfile:
        """The profile the planner uses: pinned ∪ fitted (empty when calibration is off). No API call: a pass
        must not pay for it; the object is read at start-up (`load`) and by the progress polls."""
        if not self.s.enabled:
            return CalibrationProfile()
        with self._lock:
            return effective_profile(self.pinned, self.fit)

    def load(self) -> None:
        """Read the object back, or create it. Once; an unreachable API server or a missing CRD is tried again
        a poll interval later (meanwhile calibration works in memory, and what it learns is merged in)."""
        if self._loaded or not self.s.enabled or self.clock() < self._retry_at:
            return
        with self._lock:
            if self._loaded:
                return
            self._retry_at = self.clock() + self.settings.scaling.poll_seconds
            try:
                obj = self.api.get(API_VERSION, gc.KIND, gc.DEFAULT_NAME) or self._create()
            except ApiError as exc:
                log.warning("cannot read or create the GPUCalibration %s (%s); calibrating in memory for now",
                            gc.DEFAULT_NAME, exc)
                return
            if obj is None:
                return
            self._loaded = True
            self._read_spec(obj)
            self._read_windows(obj)
            self._refit()
            self._dirty = self._dirty or bool(self.windows)

    def _create(self) -> dict[str, Any] | None:
        """Create the empty object; None when the CRD is not installed (yet)."""
        body = {"apiVersion": API_VERSION, "kind": gc.KIND, "metadata": {"name": gc.DEFAULT_NAME}, "spec": {}}
        try:
            return dict(self.api.create(body))
        except ApiError as exc:
            if exc.reason == "AlreadyExists":
                return self.api.get(API_VERSION, gc.KIND, gc.DEFAULT_NAME)  # type: ignore[no-any-return]
            if exc.status == 404:
                if not self._said_missing:
                    log.warning("the GPUCalibration CRD %s is not installed: what calibration learns is kept in "
                                "memory until it is (install the chart's CRDs, or `hexrl crds print`)", gc.CRD_NAME)
                    self._said_missing = True
                return None
            raise

    def _read_spec(self, obj: dict[str, Any]) -> None:
        """Pins and the learning switch from the object's spec (a malformed spec is ignored, said once)."""
        try:
            spec = gc.GPUCalibrationSpec.model_validate(obj.get("spec") or {})
        except ValidationError as exc:
            log.warning("ignoring the GPUCalibration's spec: %s", exc.errors()[0]["msg"])
            return
        cells = {(p.gpu, p.phase): p.factor for p in spec.pinned}
        self.pinned = CalibrationProfile(tuple(ProfileEntry(g, ph, f) for (g, ph), f in sorted(cells.items())))
        self.learning = spec.learning

    def _read_windows(self, obj: dict[str, Any]) -> None:
        """Each cell's recent observations from the status (what a previous operator process learned)."""
        for raw in (obj.get("status") or {}).get("factors") or []:
            try:
                f = gc.FactorStatus.model_validate(raw)
            except ValidationError:
                continue
            window = self._window((f.gpu, f.phase))
            window.extend(f.recent)
            if f.updated:
                self.updated[(f.gpu, f.phase)] = f.updated

    def _window(self, cell: Cell) -> deque[gc.CalibrationObservation]:
        if cell not in self.windows:
            self.windows[cell] = deque(maxlen=max(1, self.s.window))
        return self.windows[cell]

    # ------------------------------------------------------------------------------------ learning

    def observe(self, uid: str, job: str, spec: RLJobSpec, cluster: Cluster, plan: Plan,
                progress: dict[str, Any]) -> list[Observation]:
        """The job's new observations since its previous read (recorded and fitted while learning)."""
        if not self.s.enabled:
            return []
        self.load()
        sums = parse_observed_work(progress)
        with self._lock:
            before = self._last.get(uid)
            self._last[uid] = advance_base(before or {}, sums, self.s.min_observation_seconds)
        if before is None or not sums:
            return []
        predicted = predicted_work_rates(spec, cluster, plan, CostModelSettings())
        found = observations_between(before, sums, predicted, self.s.min_observation_seconds)
        if not found:
            return []
        with self._lock:
            if not self.learning:
                return []
            stamp = now_iso()
            for o in found:
                self._window((o.gpu, o.phase)).append(gc.CalibrationObservation(
                    predicted=o.predicted, observed=o.observed, seconds=o.work_seconds, job=job, time=stamp))
                self.updated[(o.gpu, o.phase)] = stamp
            self._refit()
            self._dirty = True
        return found

    def forget(self, uid: str) -> None:
        """A job went away: its last read is no base for a difference any more."""
        with self._lock:
            self._last.pop(uid, None)

    def _refit(self) -> None:
        obs = [Observation(g, p, o.predicted, o.observed, o.seconds)
               for (g, p), window in sorted(self.windows.items()) for o in window]
        self.fit = fit_calibration(obs) if obs else None
        self._export()

    def _export(self) -> None:
        """The factors in force as Prometheus gauges (hexrl_calibration_*), one series per cell."""
        cells = sorted(set(self.windows) | {(e.gpu, e.phase) for e in self.pinned.entries})
        metrics.export_calibration(
            (f.gpu, f.phase, f.factor, f.pinned, 1.0 if f.pinned else f.confidence, f.observed_seconds)
            for f in (self._factor_status(cell) for cell in cells))

    # ------------------------------------------------------------------------------------ writing

    def flush(self, force: bool = False) -> bool:
        """Once per poll interval (or now, with `force`: the operator is stopping): re-read the spec (one GET: a
        platform team's pins and `learning`), and write the status (one merge-patch) when anything changed;
        True when written."""
        if not self.s.enabled:
            return False
        self.load()
        with self._lock:
            due = self.clock() - self._last_write >= WRITE_SLACK * self.settings.scaling.poll_seconds
            if not self._loaded or not (due or force):
                return False
            self._last_write = self.clock()
        try:
            self.refresh_spec()
            with self._lock:
                if not self._dirty:
                    return False
                status = self.status()
            self.api.patch_status(API_VERSION, gc.KIND, gc.DEFAULT_NAME, None, status)
        except ApiError as exc:
            log.warning("cannot write the GPUCalibration's status (%s); trying again next poll", exc)
            return False
        with self._lock:
            self._dirty = False
        return True

    def refresh_spec(self) -> bool:
        """Read the object's spec again (a platform team may have pinned a factor); True if it changed."""
        obj = self.api.get(API_VERSION, gc.KIND, gc.DEFAULT_NAME)
        if obj is None:
            return False
        with self._lock:
            before = (self.pinned, self.learning)
            self._read_spec(obj)
            changed = (self.pinned, self.learning) != before
            if changed:
                self._dirty = True
                self._export()
            return changed

    def status(self) -> dict[str, Any]:
        """The object's status: one entry per cell with a window or a pin, a summary line for the printer."""
        with self._lock:
            cells = sorted(set(self.windows) | {(e.gpu, e.phase) for e in self.pinned.entries})
            factors = [self._factor_status(cell) for cell in cells]
            summary = "; ".join(
                f"{f.gpu} {f.phase} {f.factor:.3g} ({'pinned' if f.pinned else f'{f.confidence:.2f}'})" for f in factors)
            out = gc.GPUCalibrationStatus(factors=factors, summary=summary, cells=len(factors),
                                          learning=self.learning, updated=now_iso())
        return out.model_dump(by_alias=True, mode="json", exclude_none=True)

    def _factor_status(self, cell: Cell) -> gc.FactorStatus:
        est = self.fit.get(*cell) if self.fit is not None else None
        pinned = next((e.factor for e in self.pinned.entries if (e.gpu, e.phase) == cell), None)
        fitted = est.factor if est is not None else 1.0
        return gc.FactorStatus(
            gpu=cell[0], phase=cell[1], factor=pinned if pinned is not None else fitted, pinned=pinned is not None,
            fitted=fitted, interval=[est.low, est.high] if est is not None else [],
            confidence=est.confidence if est is not None else 0.0, ratio=est.ratio if est is not None else 1.0,
            observed_seconds=est.evidence_seconds if est is not None else 0.0,
            used=est.used if est is not None else 0, rejected=est.rejected if est is not None else 0,
            updated=self.updated.get(cell, ""), recent=list(self.windows.get(cell, ())),
        )

    def confidence(self, gpu: str, phase: str) -> float:
        """The fit's confidence in a cell (1 when pinned, 0 without evidence)."""
        with self._lock:
            if any((e.gpu, e.phase) == (gpu, phase) for e in self.pinned.entries):
                return 1.0
            est = self.fit.get(gpu, phase) if self.fit is not None else None  # type: ignore[arg-type]
            return est.confidence if est is not None else 0.0

    def is_pinned(self, gpu: str, phase: str) -> bool:
        with self._lock:
            return any((e.gpu, e.phase) == (gpu, phase) for e in self.pinned.entries)
