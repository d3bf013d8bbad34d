"""The verify step against in-memory clouds, the verification user-data, and its protocol."""

import logging
import subprocess
from pathlib import Path

import pytest

from app.tests.fakes import FakeCloud, render
from app.tests.test_build import NOTHING, CancellingCloud, leftovers, options, run
from app.tests.test_userdata import shellcheck_binary
from github_runner_image_builder import cli
from github_runner_image_builder.cancel import Cancellation
from github_runner_image_builder.guest import contents, marker, templating, verification
from github_runner_image_builder.images import revisions
from github_runner_image_builder.images.revisions import ServerRecord
from github_runner_image_builder.pipeline import builds as build_module
from image_builder_contract import platforms
from image_builder_contract.checks import Check

NOBLE, X64 = platforms.parse_base("noble"), platforms.parse_arch("x64")
SECRET = "hunter2-but-longer"  # noqa: S105 - a test value checked never to reach the guest


def _clouds() -> dict[str, FakeCloud]:
    return {"build": FakeCloud("build"), "up": FakeCloud("up")}


def test_a_verified_image_carries_its_software_report_on_every_copy(mirror: str) -> None:
    clouds = _clouds()
    report = run(options(mirror, upload_clouds=("build", "up")), clouds)
    assert report.exit_code == 0, report.failures
    assert {i.cloud for i in report.images} == {"build", "up"}
    for image in report.images:
        props = clouds[image.cloud].image_info[image.id].properties
        assert props["grib_verified"] == "true"
        assert props["grib_sw_os"] == "Ubuntu 24.04.3 LTS"
        assert props["grib_sw_kernel"] == "6.8.0-90-generic"
        assert props["grib_checks"].startswith("fresh-instance,runner,docker")
        assert image.software == clouds["build"].software
        assert [c.name for c in image.checks] == [c for c in verification.CHECKS if c != "script"]
    # The test server booted from the snapshot, in a group of its own, and both are gone.
    build = clouds["build"]
    assert build.calls.count("create_server") == 2
    assert build.calls.count("create_security_group") == 2
    assert leftovers(build) == NOTHING


@pytest.mark.parametrize(
    ("guest", "expected"),
    [
        ("fail:docker:daemon not active", "docker: daemon not active"),
        ("no-marker", "without a verification result"),
        ("never", "timed out"),
    ],
)
def test_a_failed_verification_deletes_the_image_and_copies_nothing(
    mirror: str, guest: str, expected: str
) -> None:
    clouds = _clouds()
    previous = clouds["up"].add_image("p-noble-x64", b"old")
    clouds["build"].verify_guest = guest
    report = run(options(mirror, upload_clouds=("up",), verify_timeout=60.0), clouds)
    assert report.exit_code == 1
    assert report.images == []
    [failure] = report.failures
    assert (failure.step, failure.cloud) == ("verify", "build")
    assert expected in failure.error
    # Only the base image stays in the build cloud; the upload cloud keeps its last image.
    assert clouds["build"].names() == ["p-base-noble-amd64"]
    assert list(clouds["up"].image_info) == [previous]
    assert "upload_image" not in clouds["up"].calls
    assert leftovers(clouds["build"]) == NOTHING
    if guest.startswith("fail:"):
        failed = [c for c in failure.checks if not c.ok]
        assert [(c.name, c.detail) for c in failed] == [("docker", "daemon not active")]
        assert {c.name for c in failure.checks} >= {"runner", "tools", "secrets"}


class NamingCloud(FakeCloud):
    """Remembers the name of every server booted in it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.server_names: list[str] = []

    def create_server(self, name: str, **kwargs: object) -> str:
        self.server_names.append(name)
        return super().create_server(name, **kwargs)  # type: ignore[arg-type]


def test_a_test_server_without_a_valid_host_is_booted_again_like_the_builder(
    mirror: str, caplog: pytest.LogCaptureFixture
) -> None:
    clouds: dict[str, FakeCloud] = {"build": NamingCloud("build"), "up": FakeCloud("up")}
    build = clouds["build"]
    build.verify_no_valid_host = 1
    opts = options(mirror, upload_clouds=("up",), boot_retry_delay=(30, 60))
    with caplog.at_level(logging.WARNING):
        report = run(opts, clouds)
    assert report.exit_code == 0, report.failures
    # The builder, then the test server twice; every name the poller's `<prefix>-` list sees.
    names = build.server_names  # type: ignore[attr-defined]
    assert [n.split("-")[1] for n in names] == ["builder", "verify", "verify"]
    assert all(n.startswith("p-verify-noble-x64-") for n in names[1:])
    assert "noble-x64 verify: server" in caplog.text
    assert "deleting it and booting again in" in caplog.text
    [timing] = report.timings
    assert 30 <= timing.steps["verify"] <= 70  # one pause of 30-60 s, and the ticks
    assert clouds["up"].image_info[report.images[0].id].properties["grib_verified"] == "true"
    assert leftovers(build) == NOTHING


def test_a_test_server_that_never_finds_a_host_fails_verify_and_drops_the_image(
    mirror: str,
) -> None:
    clouds = _clouds()
    clouds["build"].verify_no_valid_host = 3
    opts = options(mirror, upload_clouds=("up",), boot_retry_delay=(1, 2))
    report = run(opts, clouds)
    assert report.exit_code == 1
    [failure] = report.failures
    assert failure.step == "verify"
    assert "No valid host was found" in failure.error
    assert "(boot 3 of 3)" in failure.error
    assert clouds["build"].names() == ["p-base-noble-amd64"]
    assert "upload_image" not in clouds["up"].calls
    assert leftovers(clouds["build"]) == NOTHING


def test_a_cancellation_during_verify_cleans_up_the_test_server_and_the_image(
    mirror: str,
) -> None:
    cancellation = Cancellation()
    # The second server is the test server: cancelled as it boots.
    build = CancellingCloud("build", cancellation, "create_server", after=2)
    clouds: dict[str, FakeCloud] = {"build": build, "up": FakeCloud("up")}
    clock_time = [0.0]

    def sleep(seconds: float) -> None:
        clock_time[0] += seconds

    report = build_module.run_builds(
        *options(mirror, upload_clouds=("up",)),
        render,
        lambda name: clouds[name],
        sleep,
        lambda: clock_time[0],
        cancellation=cancellation,
    )
    assert report.exit_code == 1
    assert [(f.step, f.error) for f in report.failures] == [("verify", "cancelled")]
    assert build.calls.count("create_server") == 2  # it did boot, and was deleted
    assert build.names() == ["p-base-noble-amd64"]
    assert clouds["up"].image_info == {}
    assert leftovers(build) == NOTHING


def test_each_check_is_logged_one_by_one(mirror: str, caplog: pytest.LogCaptureFixture) -> None:
    clouds = _clouds()
    clouds["build"].verify_guest = "fail:tools:yq not on ubuntu's PATH"
    with caplog.at_level(logging.INFO):
        run(options(mirror), clouds)
    lines = [r.getMessage() for r in caplog.records]
    assert "noble-x64 verify: check runner passed" in lines
    assert "noble-x64 verify: check tools failed: yq not on ubuntu's PATH" in lines


def test_the_test_servers_group_is_made_while_the_builder_runs(mirror: str) -> None:
    """Off the critical path: before the guest is waited for, not after the snapshot."""
    clouds = _clouds()
    assert run(options(mirror), clouds).exit_code == 0
    calls = clouds["build"].calls
    groups = [i for i, call in enumerate(calls) if call == "create_security_group"]
    assert len(groups) == 2
    assert calls.index("create_server") < groups[1] < calls.index("console_output")
    assert leftovers(clouds["build"]) == NOTHING


def test_no_verify_boots_no_test_server_and_marks_the_image_unverified(mirror: str) -> None:
    clouds = _clouds()
    report = run(options(mirror, upload_clouds=("up",), verify=False), clouds)
    assert report.exit_code == 0, report.failures
    assert clouds["build"].calls.count("create_server") == 1
    assert clouds["build"].calls.count("create_security_group") == 1
    [image] = report.images
    assert clouds["up"].image_info[image.id].properties["grib_verified"] == "false"
    assert image.checks == ()


def test_the_verification_server_is_told_what_the_builder_was(mirror: str) -> None:
    clouds = _clouds()
    opts = options(
        mirror,
        runner_version="v2.321.0",
        proxy="squid.internal:3128",
        script_url="https://example.com/s.sh",
        script_secrets={"TOKEN": SECRET, "SHORT": "abc"},
        verify_script_url="https://example.com/smoke.sh",
    )
    report = run(opts, clouds)
    assert report.exit_code == 0, report.failures
    [script] = clouds["build"].verify_user_data
    assert marker.find_checks(script) == list(verification.CHECKS)
    assert "readonly GRIB_RUNNER_VERSION=2.321.0" in script
    # The build's proxy is removed before the snapshot: the image must carry none.
    assert "readonly GRIB_PROXY_EXPECTED=''" in script
    assert "readonly GRIB_VERIFY_SCRIPT_URL=https://example.com/smoke.sh" in script
    assert "readonly GRIB_BUILDER_INSTANCE_ID=server-" in script
    # No secret, only a digest of the long one; the canary never whole.
    assert SECRET not in script and "abc" not in script.split("GRIB_SECRET_DIGESTS=")[1][:5]
    assert f"GRIB_SECRET_DIGESTS={len(SECRET)}:" in script


def _render(**changes: object) -> str:
    fields: dict[str, object] = {
        "base": NOBLE,
        "arch": X64,
        "nonce": "0123456789abcdef",
        "builder_nonce": "fedcba9876543210",
        "builder_instance_id": "0b7c-builder",
        "canary": "c0ffee" * 5 + "aa",
    }
    fields.update(changes)
    return verification.render_verify_user_data(verification.VerifyOptions(**fields))  # type: ignore[arg-type]


def test_the_verification_user_data_carries_no_secret_and_no_whole_canary() -> None:
    canary = "c0ffee" * 5 + "aa"
    script = _render(script_secrets={"TOKEN": SECRET}, canary=canary)
    assert SECRET not in script
    assert canary not in script
    assert canary[:16] in script and canary[16:] in script
    assert marker.find_nonce(script, marker.VERIFY_NONCE_VARIABLE) == "0123456789abcdef"
    # The fresh-instance check looks for the builder's `GRIB_NONCE=<nonce>` under
    # /var/lib/cloud, where this very script lands: it must not find itself.
    assert "GRIB_NONCE=fedcba9876543210" not in script
    assert marker.find_nonce(script) is None


def test_the_checks_come_from_the_image_contract() -> None:
    script = _render()
    for package in contents.PACKAGES:
        assert f" {package}" in script.split("GRIB_PACKAGES=(")[1].split(")")[0]
    for tool in contents.TOOLS:
        assert f"        {tool.name}) grib_command=(" in script
    for snap in contents.SNAPS:
        assert snap.name in script.split("GRIB_SNAPS=(")[1].split(")")[0]
    assert marker.find_checks(script) == [c for c in verification.CHECKS if c != "script"]


@pytest.mark.parametrize("script_url", [None, "https://example.com/smoke.sh"])
@pytest.mark.parametrize("arch", ["x64", "arm64"])
def test_the_verification_user_data_passes_shellcheck(
    tmp_path: Path, script_url: str | None, arch: str
) -> None:
    path = tmp_path / "verify.sh"
    path.write_text(
        _render(
            arch=platforms.parse_arch(arch),
            script_url=script_url,
            script_secrets={"A": SECRET},
            proxy="http://p:1",
        )
    )
    done = subprocess.run(
        [shellcheck_binary(), "--norc", "--severity=style", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout


def test_the_verify_script_url_is_checked_like_the_script_url() -> None:
    with pytest.raises(ValueError, match="https"):
        _render(script_url="http://example.com/smoke.sh")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--os-cloud", "c", "build", "--verify-script-url", "ftp://x/y"])
    assert exit_info.value.code == 2


def test_the_result_line_survives_console_noise_and_other_nonces() -> None:
    report = marker.VerifyReport(
        (Check("docker", False, "daemon\tnot\nactive"), Check("runner", True)),
        {"os": "Ubuntu 24.04 LTS", "git": "git version 2.43.0"},
    )
    other = marker.verify_line("ffffffffffffffff", marker.VerifyReport((), {}))
    line = marker.verify_line("ab12cd34", report)
    console = f"[  1.0] noise\n{other}\n[ 12.3] audit: {line}\r\n"
    parsed = marker.parse_verify(console, "ab12cd34")
    assert parsed is not None
    assert parsed.checks == (
        Check("docker", False, "daemon not active"),
        Check("runner", True, ""),
    )
    assert parsed.software == {"os": "Ubuntu 24.04 LTS", "git": "git version 2.43.0"}
    assert marker.parse_verify(console, "0000000000000000") is None


def test_a_check_the_guest_never_reported_is_a_failure() -> None:
    opts = verification.VerifyOptions(NOBLE, X64, "ab12cd34", "ff00ff00", "builder-id")
    line = marker.verify_line("ab12cd34", marker.VerifyReport((Check("runner", True),), {}))
    with pytest.raises(verification.VerifyError) as error:
        verification.judge(line, opts)
    assert "docker: not reported" in str(error.value)
    assert "runner:" not in str(error.value)
    assert {c.name: c.ok for c in error.value.checks}["runner"] is True


def test_glance_properties_fit_glance() -> None:
    report = marker.VerifyReport(
        (Check("runner", True),), {"Node.js": "v" + "9" * 300, "empty": ""}
    )
    props = verification.properties(report)
    assert len(props["grib_sw_node_js"]) == verification.GLANCE_VALUE_MAX
    assert "grib_sw_empty" not in props
    assert props["grib_verified"] == "true"
    assert verification.properties(None) == {"grib_verified": "false"}


def test_clean_finds_test_servers_and_their_groups() -> None:
    servers = [
        ServerRecord("1", "p-verify-noble-x64-ab12"),
        ServerRecord("2", "p-builder-noble-x64-ab12"),
        ServerRecord("3", "p-noble-x64"),
        ServerRecord("4", "q-verify-noble-x64-ab12"),
    ]
    _, found, _ = revisions.leftovers(revisions.Sweep("p"), [], servers, [])
    assert [s.id for s in found] == ["1", "2"]


def test_the_guests_secret_search_finds_values_by_digest_only(tmp_path: Path) -> None:
    salt = "5a17"
    digests = verification.secret_digests({"TOKEN": SECRET, "OTHER": "x" * 40}, salt)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "app.env").write_text(f'export TOKEN="{SECRET}"\n')
    (tmp_path / "etc" / "app.yaml").write_text(f"token: {SECRET}\n")
    (tmp_path / "etc" / "clean.conf").write_text(f"token: {SECRET[:-1]}\nnothing here\n")
    (tmp_path / "whole").write_text("x" * 40)
    program = tmp_path / "find.py"
    program.write_text(templating.program("find_secrets.py"))
    done = subprocess.run(
        ["python3", str(program), salt, digests, str(tmp_path / "etc"), str(tmp_path / "whole")],
        capture_output=True,
        text=True,
        check=True,
    )
    found = {Path(line).name for line in done.stdout.split()}
    assert found == {"app.env", "app.yaml"}
    assert SECRET not in digests
    # Nothing found, nothing printed: the guest's script takes any output for a leak.
    clean = subprocess.run(
        ["python3", str(program), salt, digests, str(tmp_path / "etc" / "clean.conf")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert clean.stdout == ""


def test_a_listed_check_without_its_function_fails_rendering(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(verification, "CHECKS", (*verification.CHECKS, "sbom"))
    with pytest.raises(templating.ScriptError, match=r"verify\.sh\.j2 lists check_sbom but"):
        _render()


def test_the_verification_words_come_from_the_marker_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    words = {
        "VERIFY_WORD": "X-RESULT",
        "NONCE_VARIABLE": "X_BUILD_NONCE",
        "CHECK_ROW": "x-check",
        "SOFTWARE_ROW": "x-software",
        "CHECK_OK": "x-ok",
        "CHECK_FAILED": "x-failed",
    }
    for name, word in words.items():
        monkeypatch.setattr(marker, name, word)
    script = _render()
    for word in words.values():
        assert word in script, word
    gone = ("GRIB-VERIFY-RESULT", 'GRIB_NONCE"=', "'check\\t", "tpass", "tfail", "result software")
    for old in gone:
        assert old not in script, old
