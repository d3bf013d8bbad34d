"""Run the rendered verification script under bash with stand-ins, as the builder's is run.

The same harness as test_userdata_run.py, for the test server's script: PATH holds only
stand-ins, each records its argv. What the script examines is a fake image under
`<tmp>/fs`: the stand-ins for the commands that read files (cat, grep, find, stat, readlink,
test, python3 ...) look there for any absolute path, and `runuser` runs its command the same
way. The script probes files with the `test` command, never with `[[ -e ]]`, and the harness
turns bash's own `test` builtin off (BASH_ENV), so no probe reaches this machine's files. Two
lines of the script change before it runs, as in the builder's harness: the serial console and
the results file are files of the test. The console's one result line is judged by
`verification.judge`, as the CLI judges a real test server's.

Not proven here: what the real commands answer on an Ubuntu image (the real-guest tier runs the
script on a Debian guest), the scan of the raw disk (no block device here), `/etc/os-release`
(read by bash itself: the host's).
"""

import dataclasses
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from github_runner_image_builder.guest import contents, marker, templating, verification
from image_builder_contract import platforms
from image_builder_contract.checks import Check

NONCE = "0a1b2c3d4e5f6071"
BUILDER_NONCE = "fedcba9876543210"
BUILDER_ID = "5e1f0c3a-builder"
INSTANCE_ID = "9d2b7e44-test-server"
CANARY = "c0ffee" * 5 + "aa"
SECRET = "s3cret-token-value"  # noqa: S105 - a test value the fake image may leak
VERIFY_SCRIPT_URL = "https://scripts.example/smoke.sh"
RUNNER_VERSION = "2.321.0"

STUB = r"""#!/bin/bash
# Stand-in for a command of the verified image: records its argv, then answers as the image would.
set -u
name=${0##*/}
exec 9<>"$STUB_ROOT/count"
/usr/bin/flock 9
count=$(( $(<"$STUB_ROOT/count") + 1 ))
printf '%s\n' "$count" >"$STUB_ROOT/count"
exec 9>&-
record=$STUB_ROOT/calls/$(printf '%06d' "$count")
printf '%s\0' "$name" "$@" >"$record"
if [[ $name == "${STUB_TERM_CMD:-}" && " $* " == *"${STUB_TERM_ARG:-}"* ]]; then
    kill -TERM "$PPID"  # as systemd would stop cloud-final: signal the script mid-check
fi
# An absolute path outside the test's folder is a path of the image: look in the fake root.
fs() {
    case $1 in
        "$STUB_ROOT"/* | /dev/*) printf '%s' "$1" ;;
        /*) printf '%s' "$STUB_ROOT/fs$1" ;;
        *) printf '%s' "$1" ;;
    esac
}
mapped=()
for arg; do
    if [[ $arg == /*'*'* ]]; then  # a glob bash could not expand: expand it in the fake root
        shopt -s nullglob
        # shellcheck disable=SC2206
        matches=( $(fs "$arg") )
        shopt -u nullglob
        mapped+=("${matches[@]}")
    else
        mapped+=("$(fs "$arg")")
    fi
done
listed() { [[ " ${2:-} " == *" $1 "* ]]; }
case $name in
    cat | grep | find | readlink | install | mktemp | chmod | rm)
        exec "/usr/bin/$name" "${mapped[@]}" ;;
    test) exec /usr/bin/test "${mapped[@]}" ;;
    python3) exec "$STUB_PYTHON" "${mapped[@]}" ;;
    timeout) exec /usr/bin/timeout "${STUB_TIMEOUT:-10}" "${@:2}" ;;
    runuser)
        # runuser -u WHO -- env PATH=... COMMAND...: run COMMAND here, with the stand-ins' PATH.
        who=$2
        shift 3
        while [[ $1 == env || $1 == *=* ]]; do shift; done
        args=()
        for arg; do args+=("$(fs "$arg")"); done
        STUB_AS=$who exec "${args[@]}" ;;
    stat)
        # stat -c %U PATH: the owner the test gave that path, else ubuntu.
        [[ -e ${mapped[-1]} ]] || exit 1
        owner=$(printf '%s\n' "${STUB_OWNERS:-}" | /usr/bin/sed -n "s#^${!#} ##p")
        printf '%s\n' "${owner:-ubuntu}" ;;
    id)
        case "$*" in
            "-nG ubuntu") printf '%s\n' "${STUB_GROUPS:-ubuntu adm docker lxd sudo}" ;;
            "-u ubuntu" | "-u runner") echo 1000 ;;
            *) exit 1 ;;
        esac ;;
    sudo) [[ -z ${STUB_SUDO_ASKS:-} ]] || exit 1 ;;
    systemctl)
        case $1 in
            is-active) listed "${!#}" "${STUB_INACTIVE:-}" && exit 3 ;;
            is-enabled) listed "${!#}" "${STUB_DISABLED:-}" && exit 1 ;;
            poweroff) /usr/bin/cp "$STUB_ROOT/console" "$record.console" ;;
        esac ;;
    dpkg-query)
        listed "${!#}" "${STUB_MISSING_PACKAGES:-}" && exit 1
        printf 'install ok installed' ;;
    snap)
        case "$1 ${2:-}" in
            "list "*) listed "$2" "${STUB_MISSING_SNAPS:-}" && exit 1 ;;
            "get system") [[ -n ${STUB_SNAP_PROXY:-} ]] && printf '%s\n' "$STUB_SNAP_PROXY" ;;
            "--version "*) echo "snap 2.66.1" ;;
        esac ;;
    docker)
        case $1 in
            info) [[ -z ${STUB_DOCKER_REFUSES:-} ]] || exit 1 ;;
            --version) echo "Docker version 27.5.1, build 27.5.1-0ubuntu3" ;;
        esac ;;
    curl)
        out= url=
        while (($#)); do
            case $1 in
                --output) out=$2; shift 2 ;;
                --version) echo "curl 8.5.0"; exit 0 ;;
                https://*) url=$1; shift ;;
                *) shift ;;
            esac
        done
        if [[ $url == "$STUB_SCRIPT_URL" && $out == "$STUB_ROOT"/* ]]; then
            /usr/bin/cp "$STUB_ROOT/verify-script" "$out"
        else
            exit 22
        fi ;;
    uname) echo 6.8.0-90-generic ;;
    findmnt) exit 1 ;;  # no block device to scan here
    sync | poweroff) ;;
    # The tools jobs use: each says a version.
    *)
        case ${1:-} in
            --version | -V | -v) echo "$name version 1.2.3" ;;
        esac ;;
esac
exit 0
"""

# Real programs the script may use as they are: they only read their input or run others.
PASS_THROUGH = ("base64", "cut", "head", "sed", "sh", "sleep", "sort", "tr", "xargs")
# Stand-ins for the commands the script runs, and for every tool the contract lists.
COMMANDS = (
    "cat", "chmod", "curl", "dpkg-query", "find", "findmnt", "grep", "id", "install", "mktemp",
    "poweroff", "python3", "readlink", "rm", "runuser", "snap", "stat", "sudo", "sync",
    "systemctl", "test", "timeout", "uname",
)  # fmt: skip


@dataclasses.dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    console: str
    calls: list[list[str]]
    console_at_poweroff: str | None

    def judged(self, options: verification.VerifyOptions) -> marker.VerifyReport:
        return verification.judge(self.console, options)

    def failed(self, options: verification.VerifyOptions) -> dict[str, str]:
        """Return each failed check's detail, as the CLI's judge reports them."""
        with pytest.raises(verification.VerifyError) as error:
            verification.judge(self.console, options)
        return {c.name: c.detail for c in error.value.checks if not c.ok}


def verify_options(**changes: object) -> verification.VerifyOptions:
    values: dict[str, object] = {
        "base": platforms.parse_base("noble"),
        "arch": platforms.parse_arch("x64"),
        "nonce": NONCE,
        "builder_nonce": BUILDER_NONCE,
        "builder_instance_id": BUILDER_ID,
        "builder_machine_id": "b" * 32,
        "runner_version": RUNNER_VERSION,
        "canary": CANARY,
        "script_secrets": {"API_TOKEN": SECRET},
        "script_url": VERIFY_SCRIPT_URL,
    }
    values.update(changes)
    return verification.VerifyOptions(**values)  # type: ignore[arg-type]


def image(root: Path, script: str) -> Path:
    """Lay out a fake image that passes every check; return its root. `script` is its user-data."""
    fs = root / "fs"
    files = {
        "run/cloud-init/.instance-id": INSTANCE_ID,
        "var/lib/cloud/data/instance-id": INSTANCE_ID,
        # cloud-init keeps this boot's user-data: the verification's own, which holds no secret.
        f"var/lib/cloud/instances/{INSTANCE_ID}/user-data.txt": script,
        "etc/machine-id": "a" * 32 + "\n",
        "etc/environment": 'PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"\n',
        "etc/apt/apt.conf.d/20auto-upgrades": 'APT::Periodic::Update-Package-Lists "0";\n',
        "var/lib/systemd/linger/ubuntu": "",
        "home/ubuntu/.bashrc": "# nothing to find here\n",
    }
    for path, text in files.items():
        (fs / path).parent.mkdir(parents=True, exist_ok=True)
        (fs / path).write_text(text)
    listener = fs / contents.RUNNER_DIR.lstrip("/") / "bin" / "Runner.Listener"
    listener.parent.mkdir(parents=True)
    listener.write_text(f"#!/bin/sh\necho {RUNNER_VERSION}\n")
    listener.chmod(0o755)
    (fs / "home" / "runner").symlink_to("ubuntu")
    (fs / "usr" / "local" / "bin").mkdir(parents=True)
    return fs


def run(
    root: Path,
    options: verification.VerifyOptions,
    *,
    change: dict[str, str] | None = None,
    missing_tools: tuple[str, ...] = (),
    stub_env: dict[str, str] | None = None,
    verify_script_status: int = 0,
) -> Run:
    """Render options, lay out a passing image changed by `change`, run the script there."""
    rendered = verification.render_verify_user_data(options)
    fs = image(root, rendered)
    for path, text in (change or {}).items():
        (fs / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (fs / path.lstrip("/")).write_text(text)
    stubs = root / "bin"
    for directory in (stubs, root / "calls"):
        directory.mkdir(parents=True)
    (stubs / "stub").write_text(STUB)
    (stubs / "stub").chmod(0o755)
    tools = {tool.name for tool in contents.TOOLS} - set(missing_tools)
    for command in sorted((set(COMMANDS) | tools) - set(PASS_THROUGH)):
        (stubs / command).symlink_to("stub")
    for command in PASS_THROUGH:
        found = shutil.which(command, path="/usr/bin:/bin")
        assert found, command
        (stubs / command).symlink_to(found)
    (root / "count").write_text("0\n")
    (root / "console").write_text("")
    (root / "verify-script").write_text(f"#!/bin/sh\nexit {verify_script_status}\n")
    (root / "verify-script").chmod(0o755)
    # Bash's own `test` would look at this machine's files: the stand-in looks in the image.
    (root / "bash_env").write_text("enable -n test '['\n")

    # The serial device and the results file (on the image's /run) are files of the test.
    lines = {
        "GRIB_CONSOLE": root / "console",
        "GRIB_RESULTS": fs / "run" / "grib-verify" / "results",
    }
    for variable, file in lines.items():
        line = next(x for x in rendered.splitlines() if x.startswith(f"readonly {variable}="))
        rendered = rendered.replace(line, f"readonly {variable}={shlex.quote(str(file))}", 1)
        assert f"readonly {variable}={shlex.quote(str(file))}\n" in rendered
    script = root / "part-001"
    script.write_text(rendered)

    env = {
        "PATH": str(stubs),
        "HOME": str(root),
        "LC_ALL": "C.UTF-8",
        "BASH_ENV": str(root / "bash_env"),
        "STUB_ROOT": str(root),
        "STUB_PYTHON": sys.executable,
        "STUB_SCRIPT_URL": options.script_url or "",
        **(stub_env or {}),
    }
    result = subprocess.run(
        ["/bin/bash", str(script)],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,  # a hang guard, not a speed assertion
    )
    calls = []
    poweroff_console = None
    for record in sorted(p for p in (root / "calls").iterdir() if p.name.isdigit()):
        calls.append(record.read_text().split("\0")[:-1])
        console = record.with_name(record.name + ".console")
        if console.exists():
            poweroff_console = console.read_text()
    return Run(
        returncode=result.returncode,
        stdout=result.stdout,
        stderr=result.stderr,
        console=(root / "console").read_text(),
        calls=calls,
        console_at_poweroff=poweroff_console,
    )


def test_an_image_that_meets_the_contract_passes_every_check(tmp_path: Path) -> None:
    options = verify_options()
    result = run(tmp_path, options)
    assert "command not found" not in result.stderr, result.stderr
    report = result.judged(options)
    assert report.checks == tuple(Check(name, True, "") for name in options.checks())
    assert report.software["runner"] == RUNNER_VERSION
    assert report.software["kernel"] == "6.8.0-90-generic"
    assert report.software["docker"] == "Docker version 27.5.1, build 27.5.1-0ubuntu3"
    assert report.software["yq"] == "yq version 1.2.3"
    assert "os" in report.software
    assert len(report.software) == 3 + sum(1 for tool in contents.TOOLS if tool.version)
    # One result line, on the console before the power-off, and nothing else there.
    assert result.console.count("\n") == 1
    assert result.console.startswith(f"{marker.VERIFY_WORD} {NONCE} ")
    assert result.calls[-1] == ["systemctl", "poweroff"]
    assert result.console_at_poweroff == result.console
    # Every check logs its outcome; the script's own log lines carry the verify prefix.
    for name in options.checks():
        assert f"{verification.LOG_PREFIX}: check {name}: pass" in result.stdout
    # No file probe reached this machine: every `test` ran in the fake image.
    probes = [call for call in result.calls if call[0] == "test"]
    assert {call[1] for call in probes} >= {"-e", "-x"}
    # The secret search ran over the image, by digest.
    assert any(call[0] == "python3" and "/etc" in call for call in result.calls)


def test_missing_tools_and_a_leftover_proxy_are_named(tmp_path: Path) -> None:
    options = verify_options()
    proxy = "http://bob:pa55w0rd@squid.internal:3128"
    result = run(
        tmp_path,
        options,
        change={"/etc/environment": f"https_proxy={proxy}\n"},
        missing_tools=("yq",),
        stub_env={"STUB_MISSING_PACKAGES": "docker.io"},
    )
    failed = result.failed(options)
    assert failed == {
        "tools": "package docker.io not installed; yq not on ubuntu's PATH",
        "proxy": "environment has proxy http://***@squid.internal:3128, expected none",
    }
    # A leftover proxy's credentials never reach the console.
    assert "pa55w0rd" not in result.console and "pa55w0rd" not in result.stdout


def test_a_leaked_secret_and_canary_and_the_builders_traces_are_named(tmp_path: Path) -> None:
    options = verify_options()
    result = run(
        tmp_path,
        options,
        change={
            # cloud-init's cache of the builder's user-data, with the canary in it...
            f"/var/lib/cloud/instances/{BUILDER_ID}/obj.pkl": f"GRIB_CANARY={CANARY}\n",
            # ... and a secret the user's script wrote to a file.
            "/home/ubuntu/.config/app.env": f'export API_TOKEN="{SECRET}"\n',
        },
    )
    failed = result.failed(options)
    assert set(failed) == {"fresh-instance", "secrets"}
    builder_left = f"/var/lib/cloud/instances/{BUILDER_ID} (the builder's) is left"
    assert builder_left in failed["fresh-instance"]
    assert "the build's canary is in " in failed["secrets"]
    assert f"/fs/var/lib/cloud/instances/{BUILDER_ID}/obj.pkl" in failed["secrets"]
    assert "a script secret's value is in " in failed["secrets"]
    assert "/fs/home/ubuntu/.config/app.env" in failed["secrets"]
    # The script carries neither whole, so it never prints them either.
    assert SECRET not in result.console + result.stdout
    assert CANARY not in result.console


@pytest.mark.parametrize(
    ("stub_env", "expected"),
    [
        (
            {"STUB_INACTIVE": "docker"},
            {"docker": "daemon not active", "services": "docker not active"},
        ),
        (
            {"STUB_GROUPS": "ubuntu sudo", "STUB_SUDO_ASKS": "1"},
            {
                "users": "ubuntu is not in group docker; ubuntu is not in group lxd; "
                "sudo asks ubuntu for a password"
            },
        ),
        (
            {"STUB_OWNERS": "/usr/local/bin root", "STUB_DISABLED": "docker"},
            {
                "paths": "/usr/local/bin is owned by root, not ubuntu",
                "services": "docker not enabled",
            },
        ),
    ],
    ids=["docker", "users", "paths-services"],
)
def test_what_the_image_answers_decides_each_check(
    tmp_path: Path, stub_env: dict[str, str], expected: dict[str, str]
) -> None:
    options = verify_options()
    result = run(tmp_path, options, stub_env={"STUB_TIMEOUT": "3", **stub_env})
    assert result.failed(options) == expected


def test_a_failing_verify_script_fails_the_script_check(tmp_path: Path) -> None:
    options = verify_options()
    result = run(tmp_path, options, verify_script_status=3)
    assert result.failed(options) == {"script": "the verify script exited with status 3"}


def test_sigterm_mid_check_still_reports_what_ran_and_powers_off(tmp_path: Path) -> None:
    options = verify_options()
    # `test -b` is the secrets check's last probe: every check before it has reported.
    result = run(tmp_path, options, stub_env={"STUB_TERM_CMD": "test", "STUB_TERM_ARG": " -b "})
    assert result.returncode == 143
    failed = result.failed(options)
    assert set(failed) == {"secrets", "proxy", "script"}
    assert set(failed.values()) == {"not reported (the guest's script stopped early)"}
    assert result.calls[-1] == ["systemctl", "poweroff"]


def test_the_builders_own_script_under_var_lib_cloud_fails_fresh_instance(
    tmp_path: Path,
) -> None:
    options = verify_options()
    builder = f"#!/bin/bash\nreadonly {marker.NONCE_VARIABLE}={BUILDER_NONCE}\n"
    result = run(
        tmp_path,
        options,
        change={"/var/lib/cloud/instances/old/scripts/part-001": builder},
        stub_env={},
    )
    failed = result.failed(options)
    assert list(failed) == ["fresh-instance"]
    assert failed["fresh-instance"].startswith("builder user-data left under ")
    assert failed["fresh-instance"].endswith("/fs/var/lib/cloud/instances/old/scripts/part-001")


def test_the_report_carries_every_check_in_order_for_the_glance_properties(
    tmp_path: Path,
) -> None:
    options = verify_options(script_url=None, script_secrets={})
    result = run(tmp_path, options)
    report = result.judged(options)
    props = verification.properties(report)
    assert props[verification.CHECKS_PROPERTY] == ",".join(options.checks())
    assert props[f"{verification.SOFTWARE_PROPERTY_PREFIX}runner"] == RUNNER_VERSION
    assert not any(call[0] == "curl" and call[1] != "--version" for call in result.calls)
    assert json.dumps(report.software)  # plain strings only


def test_the_script_reaches_the_images_files_only_through_commands() -> None:
    """What makes this harness sound: bash itself touches no file but the console and results."""
    rendered = verification.render_verify_user_data(verify_options())
    code = rendered.split(shlex.quote(templating.program("find_secrets.py")), 1)[1]
    # Comments and arithmetic hold `<` and `>` that are no redirections.
    code = re.sub(r"^\s*#.*$|\(\(.*?\)\)", "", code, flags=re.M)
    # File tests of bash's own: only whether the console is writable (grib_console).
    probes = set(re.findall(r"(?:\[\[|&&|\|\|)\s*!?\s*-([a-zA-Z])\s+(\S+)", code))
    assert probes, "the pattern finds bash's tests"
    assert {(flag, word) for flag, word in probes if flag not in "nz"} == {("w", "$GRIB_CONSOLE")}
    # Redirections: the results, the console, /dev/null; `"$f"` is runuser's sh, in the image.
    targets = set(re.findall(r"(?<![<>&0-9])[0-9]?>>?\s*([^\s;)]+)", code))
    allowed = {'"$GRIB_RESULTS"', '"$GRIB_CONSOLE"', "/dev/console", "/dev/null", "&1", '"$f"'}
    assert targets <= allowed, targets - allowed
