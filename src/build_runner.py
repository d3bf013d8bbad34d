#!/usr/bin/env python3
"""Runs one image build outside any hook; started by builder.Builder.start (stdlib only).

It inherits the build lock's descriptor, forks so the hook that started it can return, runs the
CLI, writes the result file, releases the lock and finally dispatches the charm's
`build_finished` event with juju-exec. The CLI's secrets arrive in the environment; juju-exec
gets the environment without them.
"""

import argparse
import datetime
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

# Seconds one `clean` may take: it waits for each leftover server to be gone (300 s at most).
SWEEP_TIMEOUT = 600
# Seconds an overrunning CLI gets, after SIGTERM, to clean up every cloud and print its
# report; only then is it SIGKILLed. Its cleanups wait at most 300 s for a server to go.
STOP_GRACE = 600


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Return the runner's options; everything after `--` is the CLI's command line."""
    parser = argparse.ArgumentParser(prog="build_runner")
    parser.add_argument("--lock-fd", type=int, required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--started-at", required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--juju-exec", required=True)
    parser.add_argument("--unit", required=True)
    parser.add_argument("--kill-after", type=float, required=True)
    parser.add_argument("--secret-prefix", required=True)
    parser.add_argument("--lookups", type=json.loads, default=[])
    parser.add_argument("--lookup-timeout", type=float, default=120)
    parser.add_argument("--sweeps", type=json.loads, default=[])
    parser.add_argument("cli", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.cli[:1] == ["--"]:
        args.cli = args.cli[1:]
    if not args.cli:
        parser.error("the CLI command line is missing after --")
    return args


def log(message: str) -> None:
    """Write one timestamped line to the build log (our stdout)."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{now} build_runner: {message}", flush=True)


def call(command: list[str], timeout: float) -> "subprocess.CompletedProcess[str]":
    """Run a CLI command; stderr goes straight to the build log, stdout is returned."""
    return subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_cli(cli: list[str], kill_after: float, grace: float = STOP_GRACE) -> tuple[int, str, str]:
    """Run the CLI; return its exit code, stdout, and an error when it overran or cannot run.

    Past `kill_after` seconds it gets SIGTERM, which makes it cancel, clean up and print its
    report; SIGKILL follows only when it has not exited `grace` seconds later.
    """
    try:
        process = subprocess.Popen(
            cli, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
        )
    except OSError as error:
        return -1, "", f"cannot run the CLI: {error}"
    try:
        stdout, _ = process.communicate(timeout=kill_after)
        return process.returncode, stdout, ""
    except subprocess.TimeoutExpired:
        pass
    log(f"the CLI ran longer than {int(kill_after)} s: SIGTERM, {int(grace)} s to clean up")
    process.send_signal(signal.SIGTERM)
    try:
        stdout, _ = process.communicate(timeout=grace)
        return -1, stdout, f"the CLI ran longer than {int(kill_after)} s and was stopped"
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, _ = process.communicate()
        return (
            -1,
            "",
            (
                f"the CLI ran longer than {int(kill_after)} s and was killed when it had not "
                f"stopped {int(grace)} s after SIGTERM"
            ),
        )


def look_up(args: argparse.Namespace) -> list[dict[str, str]] | None:
    """Return every looked-up image when all exist already, else None (then a build runs)."""
    found = []
    for lookup in args.lookups:
        command = [args.cli[0], "--os-cloud", lookup["cloud"], "latest-build-id", lookup["name"]]
        try:
            done = call(command, args.lookup_timeout)
        except (OSError, subprocess.TimeoutExpired) as error:
            log(f"lookup of {lookup['name']} in {lookup['cloud']} failed: {error}")
            return None
        image_id = done.stdout.strip() if done.returncode == 0 else ""
        if not image_id:
            log(f"no image {lookup['name']} in {lookup['cloud']} yet: building")
            return None
        found.append({**lookup, "id": image_id})
    return found


def sweep(args: argparse.Namespace) -> None:
    """Delete what crashed builds left behind; a failure here never stops the build."""
    for command in args.sweeps:
        try:
            done = call([args.cli[0], *command], SWEEP_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as error:
            log(f"sweep {' '.join(command)} failed: {error}")
            continue
        log(f"sweep {' '.join(command)}: exit {done.returncode} {done.stdout.strip()}")


def make_result(args: argparse.Namespace, code: int, stdout: str, error: str) -> dict[str, object]:
    """Return the result document the charm reads."""
    result: dict[str, object] = {
        "run_id": args.run_id,
        "started_at": args.started_at,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "exit_code": code,
        "images": [],
        "failures": [],
        "error": error,
        "kind": "build",
    }
    if error and not stdout.strip():
        return result
    try:
        answer = json.loads(stdout)
        result["images"] = list(answer.get("images", []))
        result["failures"] = list(answer.get("failures", []))
    except (ValueError, AttributeError, TypeError):
        result["error"] = (
            error or f"the CLI exited {code} without a JSON answer; see the build log"
        )
        return result
    if error:
        return result
    if code != 0 and not result["failures"]:
        result["error"] = f"the CLI exited {code}; see the build log"
    return result


def write_result(path: Path, result: dict[str, object]) -> None:
    """Write the result atomically, readable only by root like the rest of the state dir."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(result, file)
    os.replace(tmp, path)


def dispatch(args: argparse.Namespace) -> None:
    """Bring the charm's build_finished event; update-status covers a failure here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(args.secret_prefix)}
    command = [args.juju_exec, args.unit, "JUJU_DISPATCH_PATH=hooks/build-finished", "./dispatch"]
    try:
        done = subprocess.run(
            command, env=env, stdin=subprocess.DEVNULL, timeout=3600, check=False
        )
        log(f"juju-exec build-finished exited {done.returncode}")
    except (OSError, subprocess.TimeoutExpired) as error:
        log(f"juju-exec build-finished failed: {error}")


def main(argv: list[str]) -> int:
    """Detach, build, record, release, dispatch."""
    args = parse_args(argv)
    # The hook waits for this first process only; the child carries on as an orphan of init.
    if os.fork() > 0:
        return 0
    # The descriptor is already locked (the hook took the lock); flock on the same open file is a
    # no-op that proves it.
    fcntl.flock(args.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    found = look_up(args) if args.lookups else None
    if found is not None:
        result = make_result(args, 0, json.dumps({"images": found}), "")
        result["kind"] = "lookup"
    else:
        sweep(args)
        log(f"build {args.run_id} starting: {' '.join(args.cli)}")
        code, stdout, error = run_cli(args.cli, args.kill_after)
        result = make_result(args, code, stdout, error)
    write_result(args.result, result)
    log(f"{result['kind']} {args.run_id} finished: exit {result['exit_code']} {result['error']}")
    os.close(args.lock_fd)  # released before the callback, so the handler may start the next one
    dispatch(args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
