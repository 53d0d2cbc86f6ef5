"""`hpsearch ray status|stop`: the warm local Ray that commands without `--address` share."""

from __future__ import annotations

import json
import time
from datetime import datetime

import typer

from hpsearch.cli.options import JsonOpt
from hpsearch.runtime import local_ray


def status(as_json: JsonOpt = False) -> None:
    """Whether the warm local Ray runs: address, owner process, CPUs, idle time."""
    state = local_ray.current()
    busy = state is not None and local_ray.in_use()
    idle = max(0.0, time.time() - local_ray.last_used()) if state and not busy else 0.0
    if as_json:
        info = {"running": state is not None, "home": str(local_ray.home())}
        if state is not None:
            info |= {
                "address": state.address,
                "pid": state.pid,
                "cpus": state.cpus,
                "started": state.started,
                "in_use": busy,
                "idle_seconds": round(idle, 1),
                "idle_timeout_seconds": state.idle_seconds,
            }
        typer.echo(json.dumps(info))
        return
    if state is None:
        typer.echo(f"no local Ray running (home {local_ray.home()})")
        return
    started = datetime.fromtimestamp(state.started).strftime("%Y-%m-%d %H:%M:%S")
    use = "in use" if busy else f"idle for {idle:.0f}s of {state.idle_seconds:g}s"
    typer.echo(
        f"local Ray at {state.address}: {state.cpus} CPUs, owner pid {state.pid}, "
        f"started {started}, {use}"
    )


def stop() -> None:
    """Stop the warm local Ray now (a stage running on it loses its workers; rerun resumes)."""
    state = local_ray.stop()
    if state is None:
        typer.echo("no local Ray running")
    else:
        typer.echo(f"stopped the local Ray at {state.address} (owner pid {state.pid})")


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="The warm local Ray kept between commands (see `HPSEARCH_REUSE_RAY`).",
        no_args_is_help=True,
    )
    group.command("status")(status)
    group.command("stop")(stop)
    app.add_typer(group, name="ray")
