"""Step 6, only when the inventory has `real: true` pools: the tiny job trains in containers on the real
nodes, the reward rises live, a real spot node is reclaimed mid-training and the job carries on.

The work is `hexrl.commands.demo_pods.PodsDemo`; this module decides whether the step runs and hands it
the real nodes' GPU types.
"""

from __future__ import annotations

from typing import Any

from hexrl.commands.demo.kube import node_labels
from hexrl.commands.demo.settings import DemoSettings
from hexrl.commands.demo.state import DemoRun


def has_real_nodes(settings: DemoSettings) -> bool:
    """Whether the inventory has pools of real nodes (which adds this step to the demo)."""
    from hexrl.devcluster import inventory as inv

    return bool(inv.real_nodes(inv.parse(settings.inventory)))


def train_in_real_pods(run: DemoRun) -> Any:
    """Step 6 (real nodes only): the tiny job trains in containers, the reward rises live, a real spot node
    is reclaimed mid-training and the job carries on (`hexrl.commands.demo_pods`); returns its `PodsOutcome`."""
    from hexrl.commands.demo_pods import PodsDemo, PodsDemoSettings

    gpu_types = sorted({labels.get("nvidia.com/gpu.product", "") for labels in node_labels(run.cluster).values()
                        if labels.get("hexrl.dev/real") == "true"})
    return PodsDemo(run.con, run.cluster, PodsDemoSettings(job=run.settings.pods_job), run.alive).run(gpu_types)
