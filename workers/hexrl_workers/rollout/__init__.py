"""Rollout workers: pull prompts, generate groups with an engine, score, push; migrate on SIGTERM."""
