"""Tests of whole builds against in-memory clouds: results, failures and what is left behind."""

import json
import logging
import os
import signal
from typing import Any, NamedTuple

import pytest

from app.tests.fakes import FakeCloud, qcow2, render
from github_runner_image_builder import cli
from github_runner_image_builder.cancel import Cancellation
from github_runner_image_builder.cli import build as cli_build
from github_runner_image_builder.cloud.client import Cloud
from github_runner_image_builder.guest import marker, userdata, verification
from github_runner_image_builder.images import revisions
from github_runner_image_builder.pipeline import builds
from github_runner_image_builder.pipeline.steps import GuestSecrets, Renderer, boot
from github_runner_image_builder.pipeline.steps.common import StepError
from image_builder_contract import platforms
from image_builder_contract.report import Report
from image_builder_contract.spec import BuildSpec

NOBLE, JAMMY = platforms.parse_base("noble"), platforms.parse_base("jammy")
X64, ARM = platforms.parse_arch("x64"), platforms.parse_arch("arm64")


class Order(NamedTuple):
    """A build spec and the secrets that go with it: `run_builds(*order, ...)`."""

    spec: BuildSpec
    secrets: GuestSecrets


def options(mirror: str, **flags: object) -> Order:
    """Return the order of a build on cloud "build" with prefix "p": flags as the CLI's dests."""
    document: dict[str, dict[str, object]] = {
        "site": {"cloud": "build", "timeout": 600.0},
        "image": {"bases": (NOBLE,), "arches": (X64,), "prefix": "p", "cloud_images_url": mirror},
    }
    secrets = GuestSecrets(
        script_secrets=flags.pop("script_secrets", {}),  # type: ignore[arg-type]
        proxy=flags.pop("proxy", None),  # type: ignore[arg-type]
    )
    for dest, value in flags.items():
        part, field = cli_build.FLAGS[dest]
        document.setdefault(part, {})[field] = value
    return Order(BuildSpec.model_validate(document), secrets)


def run(opts: Order, clouds: dict[str, FakeCloud], renderer: Renderer = render) -> Report:
    def open_cloud(name: str) -> Cloud:
        return clouds[name]

    clock = FakeClock()
    return builds.run_builds(*opts, renderer, open_cloud, sleep=clock.sleep, clock=clock.now)


class FakeClock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.time = 0.0

    def sleep(self, seconds: float) -> None:
        self.time += seconds

    def now(self) -> float:
        return self.time


def leftovers(cloud: FakeCloud) -> dict[str, object]:
    """What a build must not leave: servers, groups, unfinished images."""
    return {
        "servers": list(cloud.server_list),
        "groups": list(cloud.groups),
        "unfinished": [i.id for i in cloud.image_info.values() if i.status != "active"],
    }


NOTHING: dict[str, object] = {"servers": [], "groups": [], "unfinished": []}


def test_one_build_in_the_build_cloud(mirror: str) -> None:
    cloud = FakeCloud("build")
    report = run(options(mirror), {"build": cloud})
    assert report.exit_code == 0, report.failures
    [image] = report.images
    assert (image.name, image.base, image.arch) == ("p-noble-x64", "noble", "x64")
    assert image.cloud == "build"
    info = cloud.image_info[image.id]
    assert info.status == "active"
    assert info.properties["architecture"] == "x86_64"
    assert info.properties["os_distro"] == "ubuntu"
    assert info.properties["os_version"] == "24.04"
    assert info.properties["grib_runner_version"] == "latest"
    assert info.properties["grib_build_time"].endswith("Z")
    base = cloud.image_info[info.properties["grib_base_image_id"]]
    assert base.name == "p-base-noble-amd64"
    assert info.properties["grib_base_image_sha256"] == base.properties["grib_upstream_sha256"]
    assert leftovers(cloud) == NOTHING
    assert cloud.names() == ["p-base-noble-amd64", "p-noble-x64"]
    doc = json.loads(report.to_json())
    assert doc == {
        "images": [
            {
                "name": "p-noble-x64",
                "base": "noble",
                "arch": "x64",
                "cloud": "build",
                "id": image.id,
                "software": cloud.software,
                "checks": [
                    {"name": name, "ok": True, "detail": ""}
                    for name in verification.CHECKS
                    if name != "script"
                ],
            }
        ],
        "failures": [],
        "timings": [doc["timings"][0]],
        "poll_calls": report.poll_calls,
    }
    [timing] = doc["timings"]
    assert (timing["base"], timing["arch"]) == ("noble", "x64")
    assert list(timing["steps"]) == [
        "base-image", "security-group", "server", "verify-group", "wait", "snapshot", "verify",
        "copy", "prune",
    ]  # fmt: skip
    # The fake clock moves only in the poller's ticks. The fake guest is done by the first list
    # after its boot, and that answer (asked after the server was created) also ends the wait
    # for its power-off: no tick of its own.
    assert timing["steps"]["wait"] == 0.0
    assert timing["steps"]["verify"] == 2.0  # poller ticks only: the test server boots, runs
    # One tick: the list that shows the test server gone shows the builder gone too.
    assert timing["cleanup"] == 1.0
    assert timing["total"] == sum(timing["steps"].values()) + timing["cleanup"]


def test_every_base_and_arch_is_built(mirror: str) -> None:
    cloud = FakeCloud("build")
    report = run(options(mirror, base=(NOBLE, JAMMY), arch=(X64, ARM)), {"build": cloud})
    assert report.exit_code == 0, report.failures
    assert sorted((i.base, i.arch) for i in report.images) == [
        ("jammy", "arm64"),
        ("jammy", "x64"),
        ("noble", "arm64"),
        ("noble", "x64"),
    ]
    arm = next(i for i in report.images if i.arch == "arm64")
    assert cloud.image_info[arm.id].properties["architecture"] == "aarch64"
    assert leftovers(cloud) == NOTHING


def test_secrets_reach_the_user_data_but_not_the_log(
    mirror: str, caplog: pytest.LogCaptureFixture
) -> None:
    cloud = FakeCloud("build")
    seen: list[str] = []

    def recording_render(request: userdata.UserDataOptions) -> str:
        seen.append(request.script_secrets["TOKEN"])
        return render(request)

    opts = options(mirror, script_secrets={"TOKEN": "s3cr3t-value"}, runner_version="2.321.0")
    caplog.set_level("DEBUG")
    clock = FakeClock()
    report = builds.run_builds(*opts, recording_render, lambda n: cloud, clock.sleep, clock.now)
    assert report.exit_code == 0
    assert seen == ["s3cr3t-value"]
    assert "s3cr3t-value" not in caplog.text
    assert cloud.image_info[report.images[0].id].properties["grib_runner_version"] == "2.321.0"


@pytest.mark.parametrize(
    ("guest", "step", "error"),
    [
        ("failure:apt", "wait", "the guest failed at step 'apt'; console tail:\napt-get: E: b"),
        ("no-marker", "wait", "without a completion marker; console tail:\nbooting\nkernel pa"),
        ("no-console", "wait", "has no console log"),
        ("error", "server", "went to ERROR: No valid host was found. (boot 3 of 3)"),
        ("broken", "server", "went to ERROR: the hypervisor broke"),
        ("never", "wait", "timed out after 600 s waiting for server"),
    ],
)
def test_guest_failures_leave_nothing_behind(
    mirror: str, guest: str, step: str, error: str
) -> None:
    cloud = FakeCloud("build", guest=guest)
    previous = cloud.add_image("p-noble-x64", qcow2(100))
    report = run(options(mirror), {"build": cloud})
    assert report.exit_code == 1
    [failure] = report.failures
    assert (failure.base, failure.arch, failure.cloud) == ("noble", "x64", "build")
    assert failure.step == step
    assert error in failure.error
    assert report.images == []
    assert leftovers(cloud) == NOTHING
    assert previous in cloud.image_info  # the last good image is untouched
    assert cloud.names() == ["p-base-noble-amd64", "p-noble-x64"]


def test_console_tail_hides_secrets(mirror: str) -> None:
    cloud = FakeCloud("build", guest="no-marker")
    cloud.polls_to_shutoff = 1
    report = run(options(mirror, script_secrets={"T": "kernel"}), {"build": cloud})
    assert "kernel" not in report.failures[0].error
    assert "*** panic" in report.failures[0].error


# Every cloud call a build makes, and the step it belongs to.
FAILURE_POINTS = [
    ("images", "base-image"),
    ("upload_image", "base-image"),
    ("create_security_group", "security-group"),
    ("flavors", "server"),
    ("networks", "server"),
    ("create_server", "server"),
    ("server_states", "wait"),
    ("console_output", "wait"),
    ("snapshot_server", "snapshot"),
    ("image_statuses", "snapshot"),
]


@pytest.mark.parametrize(("method", "step"), FAILURE_POINTS)
def test_a_cloud_error_at_each_step_is_undone(mirror: str, method: str, step: str) -> None:
    cloud = FakeCloud("build")
    previous = cloud.add_image("p-noble-x64", qcow2(100))
    cloud.fail[method] = RuntimeError(f"{method} exploded")
    # The run's first server list (authenticating the poller), then the poller's lists of the
    # boot (two calls: BUILD, then ACTIVE) and, in the clean-up, of the server going: fail
    # from the wait step's own.
    cloud.polls_active = 1
    cloud.fail_from = {"server_states": 4}
    report = run(options(mirror), {"build": cloud})
    assert report.exit_code == 1
    expected = [(step, "build")]
    if method == "server_states":
        # Nova still failing: the clean-up deletes the server but cannot see it go, and says so.
        expected.append(("server cleanup", "build"))
    assert [(f.where, f.cloud) for f in report.failures] == expected
    assert "exploded" in report.failures[0].error
    assert leftovers(cloud) == NOTHING
    assert previous in cloud.image_info
    assert [i.id for i in cloud.image_info.values() if i.name == "p-noble-x64"] == [previous]


def test_clean_up_order_on_failure(mirror: str) -> None:
    cloud = FakeCloud("build")
    cloud.fail["console_output"] = RuntimeError("no console")
    run(options(mirror), {"build": cloud})
    tail = [c for c in cloud.calls if c.startswith("delete_") or c.startswith("create_")]
    assert tail == [
        "create_security_group",
        "create_server",
        "create_security_group",  # the test server's, made while the guest runs
        "delete_security_group",
        "delete_server",
        "delete_security_group",
    ]


def test_upload_clouds_get_copies_and_the_transit_snapshot_goes(mirror: str) -> None:
    clouds = {"build": FakeCloud("build"), "a": FakeCloud("a"), "b": FakeCloud("b")}
    report = run(options(mirror, upload_clouds=("a", "b")), clouds)
    assert report.exit_code == 0, report.failures
    assert sorted(i.cloud for i in report.images) == ["a", "b"]
    for image in report.images:
        target = clouds[image.cloud]
        assert target.image_info[image.id].properties["os_distro"] == "ubuntu"
        assert target.image_info[image.id].properties["grib_verified"] == "true"
        assert target.image_data[image.id].endswith(b"-built")
    assert clouds["build"].names() == ["p-base-noble-amd64"]  # transit snapshot deleted
    # The copies got the verification's properties at upload; the transit snapshot, never
    # a result, is not updated with them.
    assert "update_image_properties" not in clouds["build"].calls
    assert leftovers(clouds["build"]) == NOTHING


def test_both_servers_go_while_the_image_is_copied(mirror: str) -> None:
    clouds = {"build": FakeCloud("build"), "a": FakeCloud("a")}
    report = run(options(mirror, upload_clouds=("a",)), clouds)
    assert report.exit_code == 0, report.failures
    calls = clouds["build"].calls
    # Builder and test server: their deletion is asked for before the copy reads the image,
    # and the test server boots with the builder's flavor and network (no second lookup).
    download = calls.index("download_image")
    assert calls[:download].count("delete_server") == 2
    assert (calls.count("flavors"), calls.count("networks")) == (1, 1)
    assert leftovers(clouds["build"]) == NOTHING


def test_build_cloud_among_upload_clouds_keeps_its_snapshot(mirror: str) -> None:
    clouds = {"build": FakeCloud("build"), "a": FakeCloud("a")}
    report = run(options(mirror, upload_clouds=("build", "a")), clouds)
    assert report.exit_code == 0
    assert [i.cloud for i in report.images] == ["build", "a"]
    assert "p-noble-x64" in clouds["build"].names()


def test_one_failed_upload_cloud_is_reported_the_rest_kept(
    mirror: str, caplog: pytest.LogCaptureFixture
) -> None:
    clouds = {"build": FakeCloud("build"), "a": FakeCloud("a"), "b": FakeCloud("b")}
    clouds["b"].fail["upload_image"] = RuntimeError("quota exceeded")
    with caplog.at_level(logging.ERROR):
        report = run(options(mirror, upload_clouds=("a", "b")), clouds)
    assert "noble-x64 copy failed in b: quota exceeded" in caplog.messages
    assert report.exit_code == 1
    assert [i.cloud for i in report.images] == ["a"]
    failures = [(f.cloud, f.step, f.error) for f in report.failures]
    assert failures == [("b", "copy", "quota exceeded")]
    assert clouds["b"].image_info == {}


def test_every_upload_cloud_failing_fails_the_build(mirror: str) -> None:
    clouds = {"build": FakeCloud("build"), "a": FakeCloud("a")}
    clouds["a"].corrupt_uploads = True
    report = run(options(mirror, upload_clouds=("a",)), clouds)
    assert report.images == []
    assert [(f.cloud, f.step) for f in report.failures] == [("a", "copy")]
    assert clouds["a"].image_info == {}
    assert clouds["build"].names() == ["p-base-noble-amd64"]


def test_prune_keeps_revisions_and_protected(mirror: str) -> None:
    cloud = FakeCloud("build")
    # The oldest one was built by another builder (Canonical's charm names images alike).
    foreign = cloud.add_image("p-noble-x64", qcow2(10))
    ours = {revisions.BUILT_BY_US: "2026-01-01T00:00:00Z"}
    old = [cloud.add_image("p-noble-x64", qcow2(10), properties=ours) for _ in range(4)]
    other = cloud.add_image("p-jammy-x64", qcow2(10), properties=ours)
    report = run(options(mirror, keep_revisions=2, protect=frozenset({old[0]})), {"build": cloud})
    assert report.exit_code == 0
    remaining = {i.id for i in cloud.image_info.values() if i.name == "p-noble-x64"}
    assert remaining == {report.images[0].id, old[3], old[0], foreign}
    assert other in cloud.image_info


def test_prune_in_an_upload_cloud_deletes_only_images_with_our_properties(mirror: str) -> None:
    clouds = {"build": FakeCloud("build"), "req": FakeCloud("req")}
    # The requirer's project holds images of our name that it uploaded itself.
    theirs = [clouds["req"].add_image("p-noble-x64", qcow2(10)) for _ in range(3)]
    ours = {revisions.BUILT_BY_US: "2026-01-01T00:00:00Z"}
    old = [clouds["req"].add_image("p-noble-x64", qcow2(10), properties=ours) for _ in range(2)]
    report = run(options(mirror, keep_revisions=1, upload_clouds=("req",)), clouds)
    assert report.exit_code == 0, report.failures
    remaining = {i.id for i in clouds["req"].image_info.values()}
    assert remaining == {report.images[0].id, *theirs}
    assert not set(old) & remaining


def test_a_build_id_tags_every_server_group_and_image(mirror: str) -> None:
    clouds = {"build": FakeCloud("build"), "req": FakeCloud("req")}
    created: list[dict[str, str]] = []
    create_server = clouds["build"].create_server

    def recording_create(name: str, **kwargs: object) -> str:
        created.append(dict(kwargs["metadata"]))  # type: ignore[call-overload]
        return create_server(name, **kwargs)  # type: ignore[arg-type]

    clouds["build"].create_server = recording_create  # type: ignore[method-assign]
    report = run(options(mirror, upload_clouds=("build", "req"), build_id="run-42"), clouds)
    assert report.exit_code == 0, report.failures
    assert len(created) == 2  # the builder and the test server
    assert all(meta[revisions.BUILD_ID] == "run-42" for meta in created)
    descriptions = clouds["build"].group_descriptions.values()
    assert len(descriptions) == 2
    assert all(revisions.group_build_id(d) == "run-42" for d in descriptions)
    for image in report.images:
        info = clouds[image.cloud].image_info[image.id]
        assert info.properties[revisions.BUILD_ID] == "run-42"
        assert info.record().build_id == "run-42"


def test_prune_failure_is_reported_but_the_image_kept(mirror: str) -> None:
    cloud = FakeCloud("build")
    cloud.add_image("p-noble-x64", qcow2(10))
    original = cloud.images

    def images_then_fail(name: str | None = None) -> list[object]:
        if name == "p-noble-x64":
            raise RuntimeError("glance down")
        return original(name)  # type: ignore[return-value]

    cloud.images = images_then_fail  # type: ignore[method-assign,assignment]
    report = run(options(mirror, keep_revisions=1), {"build": cloud})
    assert [(f.step, f.error) for f in report.failures] == [("prune", "glance down")]
    assert len(report.images) == 1 and report.images[0].id in cloud.image_info


def test_the_real_user_data_carries_the_nonce_the_guest_reports(mirror: str) -> None:
    cloud = FakeCloud("build")
    booted: list[str] = []
    create_server = cloud.create_server

    def recording_create_server(name: str, **kwargs: Any) -> str:
        booted.append(kwargs["user_data"])
        return create_server(name, **kwargs)

    cloud.create_server = recording_create_server  # type: ignore[method-assign]
    opts = options(
        mirror,
        script_url="https://example.com/s.sh",
        script_secrets={"TOKEN": "s3cr3t"},
        proxy="proxy.example:3128",
    )
    report = run(opts, {"build": cloud}, userdata.render_user_data)
    assert report.exit_code == 0, report.failures
    script, verify = booted
    assert script.startswith("#!/bin/bash")
    assert marker.find_nonce(verify, marker.VERIFY_NONCE_VARIABLE) is not None
    assert "s3cr3t" not in verify
    assert marker.find_nonce(script) is not None
    assert "proxy.example:3128" in script


def test_a_security_group_neutron_still_holds_is_deleted_on_retry(mirror: str) -> None:
    cloud = FakeCloud("build")
    cloud.busy["delete_security_group"] = 2
    report = run(options(mirror), {"build": cloud})
    assert report.exit_code == 0, report.failures
    # Two tries refused for the test server's group, then one for it and one for the builder's.
    assert cloud.calls.count("delete_security_group") == 4
    assert leftovers(cloud) == NOTHING


def test_console_tails_never_show_the_proxy_credentials_or_secrets() -> None:

    proxy = "http://bob:s%40cr3t@squid.internal:3128"
    secrets = GuestSecrets(proxy=proxy, script_secrets={"TOKEN": "tok-12345"})
    nonce = "0123456789abcdef"
    console = (
        f"E: Failed to fetch through {proxy}\n"
        "curl: (407) proxy user bob:s@cr3t refused; token tok-12345\n"
        f"{marker.failure_line(nonce, 'apt')}\n"
    )
    with pytest.raises(StepError) as exc:
        boot.judge_console(console, nonce, secrets.values())
    message = str(exc.value)
    assert "failed at step 'apt'" in message
    for secret in ("s%40cr3t", "s@cr3t", "tok-12345", "bob:"):
        assert secret not in message
    assert "Failed to fetch through ***" in message


def test_a_server_without_a_valid_host_is_booted_again(
    mirror: str, caplog: pytest.LogCaptureFixture
) -> None:
    cloud = FakeCloud("build")
    cloud.no_valid_host = 2
    clock = FakeClock()
    opts = options(mirror, boot_retry_delay=(30, 60))
    with caplog.at_level(logging.WARNING):
        report = builds.run_builds(*opts, render, lambda n: cloud, clock.sleep, clock.now)
    assert report.exit_code == 0, report.failures
    assert cloud.calls.count("create_server") == 4  # three builder boots, then the test server
    assert cloud.calls.count("delete_server") == 4  # two failed boots, builder, test server
    assert caplog.text.count("No valid host was found. There") == 0  # the fake's own words:
    assert caplog.text.count("No valid host was found.") == 2
    assert caplog.text.count("deleting it and booting again in") == 2
    assert "(retry 2 of 2)" in caplog.text
    [timing] = report.timings
    assert 60 <= timing.steps["server"] <= 130  # two pauses of 30-60 s, and the ticks
    assert leftovers(cloud) == NOTHING


class CancellingCloud(FakeCloud):
    """Cancels the run when the build makes a given call for the `after`-th time."""

    def __init__(self, name: str, cancellation: Cancellation, on: str, after: int = 1) -> None:
        super().__init__(name)
        self.cancellation = cancellation
        self.on = on
        self.after = after

    def _call(self, method: str) -> None:
        super()._call(method)
        if method == self.on and self.calls.count(method) == self.after:
            self.cancellation.cancel()


@pytest.mark.parametrize(
    ("on", "after", "step"),
    [("create_server", 1, "server"), ("server_states", 6, "wait"), ("download_image", 1, "copy")],
)
def test_a_cancelled_build_cleans_up_and_says_where_it_stopped(
    mirror: str, on: str, after: int, step: str
) -> None:
    cancellation = Cancellation()
    cloud = CancellingCloud("build", cancellation, on, after)
    if step == "wait":
        cloud.guest = "never"  # cancelled while waiting for the guest to power off
    upload = FakeCloud("up")
    clouds = {"build": cloud, "up": upload}
    clock = FakeClock()
    report = builds.run_builds(
        *options(mirror, upload_clouds=("up",), base=(NOBLE, JAMMY)),
        render,
        lambda n: clouds[n],
        clock.sleep,
        clock.now,
        cancellation=cancellation,
    )
    assert report.exit_code == 1
    assert report.images == []
    assert {(f.base, f.error) for f in report.failures} == {
        ("noble", "cancelled"),
        ("jammy", "cancelled"),
    }
    assert step in {f.step for f in report.failures}
    assert leftovers(cloud) == NOTHING
    assert [i for i in cloud.image_info.values() if not i.name.startswith("p-base")] == []
    assert upload.image_info == {}


def test_sigterm_cancels_the_cli_which_still_prints_its_report(
    mirror: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud = FakeCloud("build", guest="never")
    polls = [0]

    def server_states(name_filter: str) -> dict[str, object]:
        polls[0] += 1
        if polls[0] == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # in the wait: as the charm's runner does
        return FakeCloud.server_states(cloud, name_filter)  # type: ignore[return-value]

    cloud.server_states = server_states  # type: ignore[method-assign,assignment]
    deps = cli.Deps(open_cloud=lambda n: cloud, render=render, sleep=lambda s: None)
    argv = ["--os-cloud", "build", "build", "--cloud-images-url", mirror, "--timeout", "1h"]
    before = signal.getsignal(signal.SIGTERM)
    code = cli.main(argv, env={}, deps=deps)
    captured = capsys.readouterr()
    assert code == 1
    doc = json.loads(captured.out)
    assert [(f["step"], f["error"]) for f in doc["failures"]] == [("wait", "cancelled")]
    assert "SIGTERM: cancelling every build" in captured.err
    assert leftovers(cloud) == NOTHING
    assert signal.getsignal(signal.SIGTERM) == before
