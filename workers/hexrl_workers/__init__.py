"""hexrl_workers: the data side of an RLJob, running inside the pods the operator creates (or locally).

Roles (`python -m hexrl_workers coordinator|rollout|trainer`): the coordinator (staleness-gated prompt
dispatch, trajectory buffer, batches, progress, metrics), rollout workers (generation with the torch or
vLLM engine, rewards, token-level migration on SIGTERM) and the trainer (decoupled PPO/GRPO, FSDP,
weight publishing, atomic checkpoints), connected by the protocol in `protocol` (rollout and trainer
reach the coordinator through `coordinator_client`) and the pull-based weight service in `weights`. `local` runs a whole job on one machine with Ray. May import `hexrl.api`
only (import-linter enforces it).
"""
