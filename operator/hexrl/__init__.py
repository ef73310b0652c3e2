"""hexrl: Kubernetes operator for disaggregated, asynchronous RL post-training on heterogeneous and preemptible GPUs."""

__version__ = "0.1.0"
