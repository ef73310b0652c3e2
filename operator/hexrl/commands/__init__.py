"""CLI verbs of `hexrl`, one module per verb; registered by `hexrl.cli`."""
