"""e2e tests run against the real local control plane: the `devcluster` and `kubeconfig` fixtures are in
tests/conftest.py (session-scoped, shared with any other folder that needs a cluster)."""
