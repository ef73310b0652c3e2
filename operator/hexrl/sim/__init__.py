"""(placeholder docstring: replaced by the module owner)."""
