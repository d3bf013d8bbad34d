"""Helpers of the charm unit tests: a temporary machine, fake CLI and juju-exec, states.

The charm runs under Scenario with its machine paths moved into a temporary folder. The CLI and
juju-exec are small executable scripts (real subprocesses) so the detached build runner is
exercised for real: it forks, holds the lock, runs the "CLI", writes the result and calls
"juju-exec", which records the call so the test can dispatch the event into Scenario.
"""

import argparse
import atexit
import dataclasses
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops import testing

import job
import job_launcher
import unit_paths
from charm import GithubRunnerImageBuilderCharm
from charms.github_runner_image_builder.v0.image import CloudCredentials
from github_runner_image_builder.cli import build_parser
from image_builder_contract.spec import BuildSpec

SRC = Path(__file__).parents[2] / "src"
CONTRACT = Path(__file__).parents[2] / "app" / "src"  # the fake CLI reads and writes its types
PASSWORD = "build-cloud-pw-7f3a9"  # noqa: S105 - test value; checked to never reach a log
SCRIPT_SECRET = "script-token-c41d2"  # noqa: S105 - test value
REQUIRER_PASSWORD = "requirer-pw-92be1"  # noqa: S105 - test value
UNIT = "github-runner-image-builder/0"

# The fake CLI: `build` answers from the plan file (optionally waiting for a release file
# first), `latest-build-id` answers from the plan's "latest" map, `copy` copies what a build
# left in the build cloud (the plan's "copy_fail" clouds refuse it). Every call is recorded.
FAKE_CLI = """#!{python}
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, {contract!r})
from image_builder_contract.report import Failure, ImageResult, Report
from image_builder_contract.spec import BuildSpec
home = Path({home!r})
plan = json.loads((home / "plan.json").read_text()) if (home / "plan.json").exists() else {{}}
argv = sys.argv[1:]
secrets = {{k: v for k, v in os.environ.items() if k.startswith("IMAGE_BUILDER_SECRET_")}}
env = {{k: os.environ.get(k, "") for k in ("OS_CLIENT_CONFIG_FILE", "http_proxy", "HTTPS_PROXY",
                                         "IMAGE_BUILDER_PROXY")}}
# The charm writes `--os-cloud=NAME COMMAND --flag=value ...`; a build's spec is a file.
opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
command = argv[1]
spec = BuildSpec.from_json(Path(opts["spec"]).read_text()) if "spec" in opts else None
with (home / "cli-calls.jsonl").open("a") as calls:
    document = spec.model_dump(mode="json") if spec else None
    calls.write(json.dumps({{"argv": argv, "secrets": secrets, "env": env, "spec": document}}))
    calls.write("\\n")
if spec is not None:
    opts.update(base=",".join(w for w in document["image"]["bases"]),
                arch=document["image"]["arches"][0], prefix=spec.image.prefix)
    opts["upload-clouds"] = ",".join(spec.upload.clouds)
if command == "clean":
    print(json.dumps({{"servers": [], "security_groups": [], "images": [], "errors": []}}))
    sys.exit(0)
if command == "latest-build-id":
    print(plan.get("latest", {{}}).get(opts["os-cloud"] + "/" + argv[2], ""))
    sys.exit(0)
kept = home / "build-cloud-images.json"  # what the build cloud holds: copy's sources
held = json.loads(kept.read_text()) if kept.exists() else {{}}
if command == "copy":
    images, failures = [], []
    for base in opts["base"].split(","):
        name = opts["prefix"] + "-" + base + "-" + opts["arch"]
        for cloud in opts["upload-clouds"].split(","):
            step = "copy" if cloud in plan.get("copy_fail", []) else ""
            step = step if name in held else "find"
            if step:
                failures.append(Failure(base, opts["arch"], cloud, step, "401 Unauthorized"))
            else:
                images.append(ImageResult(name, base, opts["arch"], cloud,
                                          "copy-" + cloud + "-" + held[name]))
    print(Report(images, failures).to_json())
    sys.exit(1 if failures else 0)
build = plan.get("build", {{}})
if build.get("wait"):
    (home / "build-waiting").touch()
    while not (home / "release").exists():
        time.sleep(0.02)
if build.get("stdout") is not None:
    print(build["stdout"])
    sys.exit(build.get("exit", 0))
counter = home / "counter"
n = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(n))
failed = set(build.get("fail_bases", []))
images, failures = [], []
for base in (word.split("@")[0] for word in opts["base"].split(",")):
    for cloud in opts.get("upload-clouds", "").split(","):
        if base in failed and cloud == "builder":
            continue  # the build cloud's copy is kept quietly (the real CLI names one cloud)
        if base in failed:
            failures.append(Failure(base, opts["arch"], cloud, "wait",
                                    "builder VM never reached SHUTOFF"))
        else:
            images.append(ImageResult(opts["prefix"] + "-" + base + "-" + opts["arch"],
                                      base, opts["arch"], cloud,
                                      "img-" + cloud + "-" + base + "-" + str(n)))
for image in images:
    if image.cloud == "builder":
        held[image.name] = image.id
kept.write_text(json.dumps(held))
print(Report(images, failures).to_json())
sys.exit(1 if failures else 0)
"""

FAKE_JUJU_EXEC = """#!{python}
import json, sys
from pathlib import Path
with (Path({home!r}) / "juju-exec-calls.jsonl").open("a") as calls:
    calls.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@dataclasses.dataclass
class Machine:
    """The charm's temporary machine: paths, the fake CLI's plan and what was called."""

    home: Path
    paths: unit_paths.Paths
    apt_calls: list[list[str]]

    def plan(self, **plan: Any) -> None:
        (self.home / "plan.json").write_text(json.dumps(plan))

    def cli_calls(self) -> list[dict[str, Any]]:
        calls = self.home / "cli-calls.jsonl"
        lines = calls.read_text().splitlines() if calls.exists() else []
        return [json.loads(line) for line in lines]

    def build_calls(self) -> list[dict[str, Any]]:
        return [c for c in self.cli_calls() if c["argv"][1] == "build"]

    def build_specs(self) -> list[BuildSpec]:
        """Return the spec of every build the charm asked for, as the CLI read it."""
        return [BuildSpec.model_validate(c["spec"]) for c in self.build_calls()]

    def juju_exec_calls(self) -> list[list[str]]:
        calls = self.home / "juju-exec-calls.jsonl"
        lines = calls.read_text().splitlines() if calls.exists() else []
        return [json.loads(line) for line in lines]

    def release(self) -> None:
        (self.home / "release").touch()

    def wait_for_callbacks(self, count: int) -> None:
        """Wait until the runner has dispatched `count` build-finished callbacks."""
        wait_until(lambda: len(self.juju_exec_calls()) >= count)
        wait_until(lambda: not build_running(self.paths))

    def wait_for_build_waiting(self) -> None:
        wait_until((self.home / "build-waiting").exists)


def request_spec(
    prefix: str = "p",
    clouds: tuple[str, ...] = ("c",),
    keep_revisions: int = 2,
    **parts: dict[str, object],
) -> BuildSpec:
    """Return a build spec as the charm writes one: the build cloud first, then the requirers'.

    `parts`: fields of the spec's parts to set, e.g. `site={"flavor": "m1"}`.
    """
    document: dict[str, dict[str, object]] = {
        "image": {"bases": ["noble"], "arches": ["x64"], "prefix": prefix},
        "site": {"cloud": job.BUILD_CLOUD, "timeout": job.BUILD_TIMEOUT},
        "upload": {"clouds": [job.BUILD_CLOUD, *clouds]},
        "prune": {"keep_revisions": keep_revisions},
    }
    for part, fields in parts.items():
        document.setdefault(part, {}).update(fields)
    return BuildSpec.model_validate(document)


# Where `spec_argv` writes the spec files of the command lines it returns (removed at exit).
_SPECS = tempfile.TemporaryDirectory(prefix="grib-test-specs-")
atexit.register(_SPECS.cleanup)


def spec_argv(build_job: job.BuildJob) -> list[str]:
    """Return the `build` command line the runner writes for a job, its spec file written."""
    spec_file = Path(_SPECS.name) / f"spec-{uuid.uuid4().hex}.json"
    spec_file.write_text(build_job.request.spec.model_dump_json())
    return job.build_argv(build_job, str(spec_file))


def cli_knows(command: str, flag: str) -> bool:
    """Return whether the real CLI's `command` takes `flag` (`--build-id` comes with the CLI
    side of issue 11, on another branch)."""
    _, unknown = build_parser().parse_known_args(["--os-cloud=c", command, f"{flag}=x"])
    return f"{flag}=x" not in unknown


def cli_args(argv: list[str]) -> argparse.Namespace:
    """Return a command line the charm wrote, as the real CLI's parser reads it."""
    if not cli_knows("build", "--build-id"):
        argv = [a for a in argv if not a.startswith("--build-id=")]
    return build_parser().parse_args(argv)


def new_machine(home: Path) -> Machine:
    """Return a temporary machine with the fake CLI and juju-exec in place."""
    home.mkdir(parents=True, exist_ok=True)
    paths = unit_paths.Paths.under(home, runner=SRC / "job_runner.py")
    script(
        paths.cli, FAKE_CLI.format(python=sys.executable, home=str(home), contract=str(CONTRACT))
    )
    script(paths.juju_exec, FAKE_JUJU_EXEC.format(python=sys.executable, home=str(home)))
    return Machine(home=home, paths=paths, apt_calls=[])


def options(argv: list[str]) -> dict[str, str]:
    """Return a CLI command line's `--flag=value` options as {flag: value}."""
    return dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)


def build_running(paths: unit_paths.Paths) -> bool:
    b = job_launcher.JobLauncher(paths, UNIT, {})
    return b.is_running()


def wait_until(condition: Callable[[], bool], limit: float = 60.0) -> None:
    """Poll a condition the detached build makes true (a deadline, not a timed assertion)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the detached build did not get there")
        time.sleep(0.02)


def password_secret() -> testing.Secret:
    return testing.Secret(tracked_content={"password": PASSWORD})


def script_secret() -> testing.Secret:
    return testing.Secret(tracked_content={"api-token": SCRIPT_SECRET})


def valid_config(secret: testing.Secret, **overrides: str | int | None) -> dict[str, str | int]:
    """Return a valid config; an override of None leaves that option unset."""
    config: dict[str, str | int] = {
        "openstack-auth-url": "https://keystone.build:5000/v3",
        "openstack-password-secret": secret.id,
        "openstack-project-domain-name": "Default",
        "openstack-project-name": "builds",
        "openstack-user-domain-name": "Default",
        "openstack-user-name": "builder",
    }
    for option, value in overrides.items():
        if value is None:
            config.pop(option, None)
        else:
            config[option] = value
    return config


def requirer_data(project: str, user: str, password: str = REQUIRER_PASSWORD) -> dict[str, str]:
    return {
        "auth_url": f"https://keystone.{project}:5000/v3",
        "password": password,
        "project_domain_name": "Default",
        "project_name": project,
        "user_domain_name": "Default",
        "username": user,
    }


def cloud_id(project: str, user: str) -> str:
    """Return the id the charm gives a requirer cloud of image_relation(project, user)."""
    return CloudCredentials.from_databag(requirer_data(project, user)).cloud_id


RUNNERS = cloud_id("runners", "runner")
ALPHA = cloud_id("alpha", "bot")
BETA = cloud_id("beta", "bot")
SHARED = cloud_id("shared", "bot")


def image_relation(
    project: str = "runners", user: str = "runner", **kwargs: Any
) -> testing.Relation:
    return testing.Relation("image", remote_units_data={0: requirer_data(project, user)}, **kwargs)


def base_state(*relations: testing.Relation, **config: str | int | None) -> testing.State:
    secret = password_secret()
    return testing.State(
        config=valid_config(secret, **config),
        secrets={secret},
        relations=set(relations),
        leader=True,
    )


def emit(
    ctx: testing.Context[GithubRunnerImageBuilderCharm], state: testing.State, name: str
) -> testing.State:
    """Run one of the charm's custom events (`run`, `build_finished`) as its own dispatch.

    Scenario cannot target events on charm.on directly, so the event is emitted inside a
    `start` dispatch, which the charm does not observe (only collect-status runs after it).
    """
    with ctx(ctx.on.start(), state) as manager:
        getattr(manager.charm.on, name).emit()
        out: testing.State = manager.run()
        return out
