"""The operator: the only package that talks to Kubernetes (kopf, kubernetes).

Data flows one way (DESIGN.md §2): Node/Pod indexes (`store`, fed by kopf in `handlers`) →
`snapshot.build_cluster` → `hexrl.sched.plan`/`replan` → `render` (pure manifests) → apply through
`kubeapi` → one status write (computed by `conditions`), all inside one `reconcile` pass per job,
scheduled by the debouncing `workqueue.WorkQueue`. `reconcile.Reconciler` composes the parts of a pass:
`planning.Planning` (snapshot → planner → reservation ledger), `applier.Applier` (render → apply, pods, gang restart),
`statuswriter.StatusWriter` (conditions, Events, the status write), which share `podview.PodView` and
`announcer.Announcer`; `jobmemory` holds each job's memory and the data the parts hand each other,
`replanpolicy` when a cluster change is worth a planner call, `operatorkey` the key behind job tokens.
`render` re-exports `render_static`, `render_pods` and `render_parts`. `scaling` adjusts rollout from the
coordinator's progress, `metrics` holds every Prometheus metric, `settings` every knob, and `main` starts
the process (`hexrl operator`).
"""
