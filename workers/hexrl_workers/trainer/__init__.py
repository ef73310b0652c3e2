"""The trainer: GRPO/decoupled-PPO updates, weight publishing, atomic checkpoints (see `loop`)."""
