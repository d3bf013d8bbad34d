#!/usr/bin/env python3
"""Benchmark (not a test): each hook's wall time while a long build is in flight.

Runs the charm under Scenario with the machine moved into a temporary folder, starts a build
whose fake CLI keeps running until released (standing in for a 10-minute build), then dispatches
every hook several times and prints the median wall time of each. The real detached runner,
lock and fake CLI processes are used; Juju's own overhead (process start, hook tools) is not
included. Run: ./dev -e benchmark   (or: PYTHONPATH=src:lib python tests/benchmarks/hook_times.py)
"""

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "lib"), str(ROOT / "tests" / "unit")]

from ops import testing  # noqa: E402

import machine_files  # noqa: E402
import unit_paths  # noqa: E402
from charm import GithubRunnerImageBuilderCharm  # noqa: E402
from charm_helpers import (  # noqa: E402
    CONTRACT,
    FAKE_CLI,
    FAKE_JUJU_EXEC,
    Machine,
    base_state,
    build_running,
    emit,
    image_relation,
    script,
    wait_until,
)

RUNS = 7
BUDGET = 2.0  # seconds: every hook but install/upgrade must return within this


def machine_in(home: Path) -> Machine:
    """Point the charm's machine paths into a folder with the fake CLI and juju-exec."""
    paths = unit_paths.Paths.under(home, runner=ROOT / "src" / "job_runner.py")
    script(
        paths.cli, FAKE_CLI.format(python=sys.executable, home=str(home), contract=str(CONTRACT))
    )
    script(paths.juju_exec, FAKE_JUJU_EXEC.format(python=sys.executable, home=str(home)))
    unit_paths.default_paths = lambda charm_dir, unit: paths  # type: ignore[assignment]
    machine_files.apt_install = lambda packages: None
    return Machine(home=home, paths=paths, apt_calls=[])


def median_seconds(run: Callable[[], object], setup: Callable[[], object] = lambda: None) -> float:
    """Return the median wall time of RUNS calls, each after an untimed setup."""
    times = []
    for _ in range(RUNS):
        setup()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(machine: Machine) -> int:
    """Start a long build, time every hook against it; 1 when a hook is over budget."""
    prefix = "github-runner-image-builder"
    machine.plan(
        build={"wait": True},
        latest={f"other_bot/{prefix}-noble-x64": "existing-noble"},
    )
    ctx = testing.Context(GithubRunnerImageBuilderCharm, unit_id=0)
    relation = image_relation()
    start = time.perf_counter()
    state = ctx.run(ctx.on.action("run"), base_state(relation))
    launch = time.perf_counter() - start
    machine.wait_for_build_waiting()
    assert build_running(machine.paths)

    other = image_relation("other", "bot")
    with_other = base_state(relation, other)
    secret = next(iter(state.secrets))
    hooks: dict[str, Callable[[], object]] = {
        "config-changed": lambda: ctx.run(ctx.on.config_changed(), state),
        "secret-changed": lambda: ctx.run(ctx.on.secret_changed(secret), state),
        "update-status": lambda: ctx.run(ctx.on.update_status(), state),
        "run (cron, queues)": lambda: emit(ctx, state, "run"),
        "run action (queues)": lambda: ctx.run(ctx.on.action("run"), state),
        "build-finished (nothing new)": lambda: emit(ctx, state, "build_finished"),
        "image-relation-joined (new cloud)": lambda: ctx.run(
            ctx.on.relation_joined(other, remote_unit=0), with_other
        ),
        "image-relation-changed (new cloud)": lambda: ctx.run(
            ctx.on.relation_changed(other, remote_unit=0), with_other
        ),
        "image-relation-departed": lambda: ctx.run(
            ctx.on.relation_departed(other, remote_unit=0, departing_unit=0), with_other
        ),
        "image-relation-broken": lambda: ctx.run(ctx.on.relation_broken(other), with_other),
    }
    print(f"  {'run action (starts the build, 1 run)':34} {launch * 1000:8.1f} ms")
    print(f"median of {RUNS} runs, build in flight: {build_running(machine.paths)}")
    worst = 0.0

    def forget_other_cloud() -> None:
        # So every relation-joined/changed run meets a cloud without images (deferred to
        # the end of the running build, as a lookup job).
        catalogue = machine.paths.catalogue
        if catalogue.exists():
            catalogue.write_text(catalogue.read_text().replace("other_bot", "gone_bot"))

    for name, run in hooks.items():
        seconds = median_seconds(run, forget_other_cloud)
        worst = max(worst, seconds)
        print(f"  {name:34} {seconds * 1000:8.1f} ms")
    still = build_running(machine.paths)
    print(
        f"build still in flight after all hooks: {still}; builds started: "
        f"{len(machine.build_calls())}; rebuild queued: {machine.paths.queued.exists()}"
    )
    machine.release()
    wait_until(lambda: not build_running(machine.paths))
    machine.plan()
    start = time.perf_counter()
    emit(ctx, state, "build_finished")
    finished = time.perf_counter() - start
    print(f"  {'build-finished (publish+rebuild)':34} {finished * 1000:8.1f} ms")
    # The publishing build-finished starts the queued rebuild; let it end before cleanup.
    wait_until(lambda: not build_running(machine.paths))
    # A real lookup runs the real CLI: its import of openstacksdk is the floor of that cost.
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import openstack"], check=False)
    print(f"  (real CLI floor: importing openstacksdk {time.perf_counter() - start:.2f} s)")
    worst = max(worst, launch, finished)
    print(f"slowest hook {worst:.3f} s; budget {BUDGET} s: {'OK' if worst < BUDGET else 'OVER'}")
    return 0 if worst < BUDGET else 1


def main() -> int:
    """Run the measurement on a temporary machine; never leave a build process behind."""
    with tempfile.TemporaryDirectory() as folder:
        machine = machine_in(Path(folder))
        try:
            return measure(machine)
        finally:
            machine.plan()
            machine.release()
            wait_until(lambda: not build_running(machine.paths))


if __name__ == "__main__":
    sys.exit(main())
