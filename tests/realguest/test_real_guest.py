"""The completion protocol end to end in a real guest running real cloud-init.

The user-data comes from the real `github-runner-image-builder user-data` command, reaches the
guest on an OpenStack config drive, and the guest's own cloud-init runs it. The guest has no way
out to the internet, so the script fails at its first step that must download something; the
test proves that the failure marker naming that step reaches the serial console (what the CLI
reads from Nova's console log) and that the VM then powers itself off (what the CLI waits for).

The second test boots the same guest as a verification's test server, with the verification
user-data the CLI renders: its real checks run, the report reaches the console, and the checks
this Debian guest must fail (it has no runner, no docker, and a planted leak) are named.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from github_runner_image_builder.guest import marker, verification
from image_builder_contract import platforms

# The helpers live next to this file (pytest runs with importlib mode).
sys.path.insert(0, str(Path(__file__).parent))

import guest_image
import guest_vm

# Wall times of this session's phases, printed after the test (measured, never asserted).
TIMINGS: dict[str, float] = {}

# How long QEMU may run before the test calls the guest hung. A guard, not a speed check: the
# guest takes one to two minutes under TCG on two shared cores.
GUEST_LIMIT = float(os.environ.get("REALGUEST_LIMIT", "600"))
# The verification scans the whole 3 GB disk under TCG: 555 s to its result on a busy machine.
VERIFY_LIMIT = float(os.environ.get("REALGUEST_LIMIT", "1500"))
# `hostname` needs no network. `apt` does not fail: apt-get update only warns when the mirror
# cannot be reached, and upgrade then has nothing to do. `packages` is the first step whose
# download failure is fatal (apt-get install finds none of the packages: like a cloud image,
# the guest ships no package lists). A real Ubuntu builder with no route out fails the same way.
EXPECTED_FAILED_STEP = "packages"


def test_real_cloud_init_reports_the_failed_step_and_powers_off(
    guest: guest_image.GuestImage,
    cli: str,
    qemu_processes: list["subprocess.Popen[bytes]"],
    tmp_path: Path,
) -> None:
    rendered = subprocess.run(
        [cli, "user-data", "--base", "noble", "--arch", "x64"],
        capture_output=True,
        text=True,
        check=True,
    )
    user_data = rendered.stdout
    nonce = marker.find_nonce(user_data)
    assert nonce, "the rendered user-data carries no nonce"

    files = guest_vm.GuestFiles(
        disk=guest_vm.make_overlay(guest.disk, tmp_path),
        config_drive=guest_vm.make_config_drive(user_data, tmp_path),
        console=tmp_path / "console.log",
        qemu_log=tmp_path / "qemu.log",
    )
    # QEMU must exit 0 on the guest's power-off (with -no-reboot a reboot ends it too: the
    # kernel's last words tell which); _run_guest checks both.
    console, ended, marker_seen = _run_guest(
        guest,
        files,
        qemu_processes,
        lambda text: marker.parse_console(text, nonce) is not None,
        GUEST_LIMIT,
    )
    tail = "\n".join(console.splitlines()[-60:])
    if marker_seen is not None:
        TIMINGS["boot to marker"] = marker_seen
    TIMINGS["boot to poweroff (QEMU exit)"] = ended

    # The guest's cloud-init ran our script: its own log lines name the steps it began, in order.
    begun = re.findall(r"grib: step ([a-z]+) \(at", console)
    assert begun == ["hostname", "apt", EXPECTED_FAILED_STEP], f"console tail:\n{tail}"

    # The protocol: the CLI's own parser reads failure at the step, from exactly one line.
    assert marker.parse_console(console, nonce) == marker.Marker(
        success=False, step=EXPECTED_FAILED_STEP
    ), f"console tail:\n{tail}"
    assert console.count(f"{marker.MARKER_WORD} {nonce}") == 1, f"console tail:\n{tail}"
    # ... and only then the VM went down: the marker is written before the power-off starts.
    assert console.index(f"{marker.MARKER_WORD} {nonce}") < console.index("reboot: Power down")


def _run_guest(
    guest: guest_image.GuestImage,
    files: guest_vm.GuestFiles,
    qemu_processes: list["subprocess.Popen[bytes]"],
    done: Callable[[str], bool],
    limit: float,
) -> tuple[str, float, float | None]:
    """Boot, wait for QEMU to exit; return the console, the wall time, when `done` first held."""
    started = time.monotonic()
    process = guest_vm.start(guest.kernel, guest.initrd, files)
    qemu_processes.append(process)
    seen: float | None = None
    while process.poll() is None and time.monotonic() - started < limit:
        if seen is None and done(guest_vm.read_console(files)):
            seen = time.monotonic() - started
        time.sleep(1)
    console = guest_vm.read_console(files)
    tail = "\n".join(console.splitlines()[-60:])
    assert process.poll() is not None, (
        f"the guest was still running after {limit:.0f} s; console tail:\n{tail}"
    )
    qemu_log = files.qemu_log.read_text(errors="replace")
    assert process.returncode == 0, f"QEMU exited {process.returncode}: {qemu_log}"
    assert "reboot: Power down" in console, f"the guest did not power off; console tail:\n{tail}"
    return console, time.monotonic() - started, seen


def test_real_verification_reports_each_check_and_names_the_failed_ones(
    guest: guest_image.GuestImage,
    qemu_processes: list["subprocess.Popen[bytes]"],
    tmp_path: Path,
) -> None:
    canary = marker.new_nonce() + marker.new_nonce()
    options = verification.VerifyOptions(
        base=platforms.parse_base("noble"),
        arch=platforms.parse_arch("x64"),
        nonce=marker.new_nonce(),
        builder_nonce=marker.new_nonce(),
        builder_instance_id="0e1f2a3b-builder-that-made-this-image",
        builder_machine_id=marker.new_nonce() * 2,
        runner_version="2.321.0",
        canary=canary,
        script_secrets={"API_TOKEN": "realguest-secret-" + marker.new_nonce()},
    )
    user_data = verification.render_verify_user_data(options)
    # A leak to find: the server's metadata carries the canary, and cloud-init keeps its
    # datasource (metadata included) on the root disk, in /var/lib/cloud/instances/<id>/.
    files = guest_vm.GuestFiles(
        disk=guest_vm.make_overlay(guest.disk, tmp_path),
        config_drive=guest_vm.make_config_drive(user_data, tmp_path, meta={"leak": canary}),
        console=tmp_path / "console.log",
        qemu_log=tmp_path / "qemu.log",
    )
    console, ended, seen = _run_guest(
        guest,
        files,
        qemu_processes,
        lambda text: marker.parse_verify(text, options.nonce) is not None,
        VERIFY_LIMIT,
    )
    TIMINGS["verification: boot to poweroff (QEMU exit)"] = ended
    if seen is not None:
        TIMINGS["verification: boot to result"] = seen
    tail = "\n".join(console.splitlines()[-60:])

    report = marker.parse_verify(console, options.nonce)
    assert report is not None, f"no verification result on the console; tail:\n{tail}"
    assert console.count(f"{marker.VERIFY_WORD} {options.nonce}") == 1
    assert console.index(f"{marker.VERIFY_WORD} {options.nonce}") < console.index(
        "reboot: Power down"
    )
    outcome = {c.name: c for c in report.checks}
    # Every check ran and reported, in order, on the guest's real system.
    assert [c.name for c in report.checks] == list(options.checks()), f"tail:\n{tail}"
    assert "Debian" in report.software["os"]
    assert report.software["kernel"]
    assert report.software.get("python3", "").startswith("Python 3")
    # What this guest really is: fresh from cloud-init, no runner, no docker, no snaps.
    assert outcome["fresh-instance"].ok, outcome["fresh-instance"]
    assert outcome["proxy"].ok, outcome["proxy"]
    assert not outcome["runner"].ok
    assert "Runner.Listener is missing" in outcome["runner"].detail
    assert (outcome["docker"].ok, outcome["docker"].detail) == (False, "daemon not active")
    assert "package docker.io not installed" in outcome["tools"].detail
    assert "yq not on ubuntu's PATH" in outcome["tools"].detail
    assert not outcome["users"].ok and "docker" in outcome["users"].detail
    # The planted leak is found, and named by where it is.
    assert not outcome["secrets"].ok
    assert "the build's canary is in /" in outcome["secrets"].detail, outcome["secrets"]
    # The secret itself is nowhere on this disk: the digest search finds nothing, says nothing.
    assert "script secret" not in outcome["secrets"].detail, outcome["secrets"]
    # The CLI's judge names each failed check with its detail, as the build's error would.
    with pytest.raises(verification.VerifyError) as failed:
        verification.judge(console, options)
    assert "runner: " in str(failed.value) and "docker: daemon not active" in str(failed.value)
    # The verification's own user-data is on this disk too: it held no secret to leak.
    assert options.script_secrets["API_TOKEN"] not in user_data


@pytest.fixture(scope="session", autouse=True)
def report_timings(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print each phase's wall time after the tests, passed or failed."""
    started = time.monotonic()
    yield
    TIMINGS["total (test session)"] = time.monotonic() - started
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        for name, seconds in TIMINGS.items():
            reporter.write_line(f"real-guest timing: {name}: {seconds:.1f} s")


@pytest.fixture(scope="session")
def host_ready() -> None:
    """Install QEMU, debootstrap and friends when missing; skip when they cannot be."""
    if not sys.platform.startswith("linux") or os.uname().machine != "x86_64":
        pytest.skip("the real-guest tier boots an x86_64 guest and needs an x86_64 Linux host")
    missing = guest_image.missing_host_files()
    if missing:
        started = time.monotonic()
        try:
            guest_image.install_host_packages()
        except RuntimeError as exc:
            pytest.skip(f"cannot install the packages the real-guest tier needs: {exc}")
        TIMINGS["host packages install"] = time.monotonic() - started
        still = guest_image.missing_host_files()
        if still:
            pytest.skip(f"installed the host packages but these files are missing: {still}")
    else:
        TIMINGS["host packages install"] = 0.0


@pytest.fixture(scope="session")
def guest(host_ready: None, tmp_path_factory: pytest.TempPathFactory) -> guest_image.GuestImage:
    """Return the guest image, built on first use and then taken from the cache."""
    if os.geteuid() != 0 and guest_image.cached_image(guest_image.cache_dir()) is None:
        pytest.skip("building the guest image runs debootstrap, which needs root")
    log = tmp_path_factory.mktemp("image") / "build.log"
    started = time.monotonic()
    try:
        image = guest_image.ensure_image(guest_image.cache_dir(), log)
    except RuntimeError as exc:
        pytest.fail(f"building the guest image failed: {exc}\n{_tail(log)}")
    TIMINGS["guest image (build or cache)"] = time.monotonic() - started
    return image


@pytest.fixture
def qemu_processes() -> Iterator[list["subprocess.Popen[bytes]"]]:
    """Collect the QEMU processes a test starts; kill any still running when it ends."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture(scope="session")
def cli() -> str:
    """Return the path of the installed github-runner-image-builder command."""
    found = shutil.which("github-runner-image-builder")
    if found is None:
        pytest.fail("github-runner-image-builder is not installed: run this tier with tox")
    return found


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
