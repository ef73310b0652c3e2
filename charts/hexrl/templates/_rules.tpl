{{/*
hexrl's recording and alerting rules, in Prometheus rule-file form (`groups:`). The PrometheusRule
template embeds them; tests/chart renders them with `helm template`, checks them with `promtool check
rules` and loads them into a real Prometheus. Each alert compares a recorded signal (`hexrl:…`) with a
threshold from values, so the signal itself can be graphed and checked for data.

Label conventions: per-job series carry `namespace` and `job` = the RLJob's name (the operator exports
them; worker pods get them from the PodMonitor's `jobLabel: hexrl.dev/job`).
*/}}
{{- define "hexrl.rules" -}}
{{- $r := .Values.prometheusRule }}
groups:
  - name: hexrl.signals
    rules:
      - record: hexrl:job_staleness:p90
        # 90th percentile of the policy lag of trained samples over 5 minutes (versions).
        expr: histogram_quantile(0.9, sum by (namespace, job, le) (rate(hexrl_observed_staleness_bucket[5m])))
      - record: hexrl:job_staleness_bound:ratio
        # p90 staleness as a fraction of η (the live maxPolicyLag); 1 means at the bound. Jobs with η = 0 are left out.
        expr: hexrl:job_staleness:p90 / on (namespace, job) (max by (namespace, job) (hexrl_max_policy_lag) > 0)
      - record: hexrl:job_trainer_idle:ratio
        # Fraction of wall time the trainer waited for a batch (seconds idle per second).
        expr: sum by (namespace, job) (rate(hexrl_trainer_idle_seconds_total[5m]))
      - record: hexrl:job_trained_tokens:rate5m
        # Observed training-consumed tokens/s (prompt + response tokens of trained trajectories).
        expr: sum by (namespace, job) (rate(hexrl_trained_tokens_total[5m]))
      - record: hexrl:preemptions:increase10m
        # Pods of RLJobs replaced because their node went away, over 10 minutes.
        expr: sum(increase(hexrl_preemptions_handled_total[10m]))
      - record: hexrl:jobs_degraded:count
        # RLJobs in phase Degraded.
        expr: sum(hexrl_jobs{phase="Degraded"})
      - record: hexrl:reconciles_infeasible:increase15m
        # Reconcile passes that ended with an infeasible plan (Planned=False), over 15 minutes.
        expr: sum(increase(hexrl_operator_reconciles_total{result="infeasible"}[15m]))
  - name: hexrl.alerts
    rules:
      - alert: HexrlStalenessNearBound
        expr: hexrl:job_staleness_bound:ratio > {{ $r.stalenessFraction }}
        for: {{ $r.for }}
        labels:
          severity: warning
          {{- with $r.alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: RLJob {{ "{{ $labels.namespace }}/{{ $labels.job }}" }} trains on samples close to its staleness bound η
          description: >-
            The 90th percentile policy lag is {{ "{{ $value | humanizePercentage }}" }} of η. Rollout produces faster than the
            trainer consumes; the operator shrinks rollout near the bound. If this persists, raise
            spec.staleness.maxPolicyLag or give the trainer more GPUs.
      - alert: HexrlTrainerStarving
        expr: hexrl:job_trainer_idle:ratio > {{ $r.trainerIdleFraction }}
        for: {{ $r.for }}
        labels:
          severity: warning
          {{- with $r.alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: The trainer of RLJob {{ "{{ $labels.namespace }}/{{ $labels.job }}" }} waits for data {{ "{{ $value | humanizePercentage }}" }} of the time
          description: >-
            Rollout is the bottleneck. Check for lost spot capacity (kubectl describe rlj), the budget
            (spec.budget.maxCostPerHour) and whether spot rollout is allowed (spec.placement.spot.rollout).
      - alert: HexrlPreemptionStorm
        expr: hexrl:preemptions:increase10m > {{ $r.preemptionsPer10m }}
        for: 0m
        labels:
          severity: warning
          {{- with $r.alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: RLJob pods preempted in the last 10 minutes - {{ "{{ $value | humanize }}" }}
          description: >-
            Spot capacity is being reclaimed quickly. Jobs keep progressing on the on-demand rollout floor
            (spec.placement.spot.onDemandRolloutFloor); consider raising it or moving rollout to another pool.
      - alert: HexrlJobDegraded
        expr: hexrl:jobs_degraded:count > 0
        for: {{ $r.for }}
        labels:
          severity: critical
          {{- with $r.alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: RLJobs in phase Degraded - {{ "{{ $value | humanize }}" }}
          description: >-
            A trainer rank was lost or the job cannot get the capacity its plan needs. `kubectl get rlj -A`
            shows which; `kubectl describe rlj NAME` shows the Degraded condition and events.
      - alert: HexrlPlanInfeasible
        expr: hexrl:reconciles_infeasible:increase15m > 0
        for: 0m
        labels:
          severity: warning
          {{- with $r.alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: The planner found no feasible plan for an RLJob
          description: >-
            An RLJob is Planned=False (model does not fit any GPU, budget too small, no eligible GPUs…).
            `kubectl get rlj -A` and the Planned condition's reason and message say what to change.
{{- end }}
