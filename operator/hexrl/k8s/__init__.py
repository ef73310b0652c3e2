"""The operator: the only package that talks to Kubernetes (kopf, kubernetes).

Data flows one way (DESIGN.md §2): Node/Pod indexes (`store`, fed by kopf in `handlers`) →
`snapshot.build_cluster` → `hexrl.sched.plan`/`replan` → `render` (pure manifests) → apply through
`kubeapi` → one status write (`status`), all inside one `reconcile` pass per job, scheduled by the
debouncing `runtime.WorkQueue`. The pass's steps have their own modules: `planstep` (snapshot → planner →
reservation ledger), `applystep` (render → apply, pods, gang restart), `statusstep` (conditions, Events,
the status write), sharing `passstate`; `render` re-exports `render_static`, `render_pods` and
`render_common`. `scaling` adjusts rollout from the coordinator's progress, `metrics` holds every
Prometheus metric, `settings` every knob, and `main` starts the process (`hexrl operator`).
"""
