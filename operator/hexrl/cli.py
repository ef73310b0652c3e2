"""The `hexrl` command: plan, simulate, run, export, operator, cluster, crds, calibrate.

Each verb lives in its own module under `hexrl.commands` (owned by the area it drives) and is only
registered here; heavy imports (torch, kopf, pulp) happen inside the commands so `hexrl --help` is fast.
"""

from __future__ import annotations

import typer

from hexrl.commands import calibrate, cluster, crds, demo, export, operator, plan, run, simulate, tinymodel

app = typer.Typer(
    name="hexrl",
    help="Disaggregated, asynchronous RL post-training on heterogeneous and preemptible GPU pools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("plan", help=plan.__doc__)(plan.plan_command)
app.command("simulate", help=simulate.__doc__)(simulate.simulate_command)
app.command("run", help=run.__doc__)(run.run_command)
app.command("export", help=export.__doc__)(export.export_command)
app.command("operator", help=operator.__doc__)(operator.operator_command)
app.add_typer(cluster.app, name="cluster")
app.add_typer(crds.app, name="crds")
app.command("demo", help=demo.__doc__)(demo.demo_command)
app.command("tiny-model", help=tinymodel.__doc__)(tinymodel.tiny_model_command)
app.command("calibrate", help=calibrate.__doc__)(calibrate.calibrate_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
