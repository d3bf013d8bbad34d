"""Run the rendered user-data under bash with stand-ins for every system command.

PATH holds only the stand-ins, so a command the script runs that has no stand-in fails the run
instead of touching this machine. Each stand-in records its argv (and stdin for `install` from
/dev/stdin and `tee`); a test can make one fail. The serial console is a file here. This proves
the step order, the failure marker for each step, the secrets' path into the user script, and
that the script survives overwriting itself; what the real commands do in an Ubuntu guest is not
proven here.
"""

import dataclasses
import hashlib
import itertools
import json
import shlex
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from github_runner_image_builder.guest import marker, userdata
from image_builder_contract import platforms, rules
from tests.support.hostile import hostile_proxy_passwords, hostile_values

NONCE = "fedcba9876543210"
SCRIPT_URL = "https://scripts.example/build.sh"
TARBALL = b"not really a tarball, the tar stand-in never opens it"

STUB = r"""#!/bin/bash
# Stand-in for a system command: records its argv, then acts as its name says.
set -u
name=${0##*/}
# Pipelines run stand-ins concurrently: take the counter under a lock.
exec 9<>"$STUB_ROOT/count"
/usr/bin/flock 9
count=$(( $(<"$STUB_ROOT/count") + 1 ))
printf '%s\n' "$count" >"$STUB_ROOT/count"
exec 9>&-
record=$STUB_ROOT/calls/$(printf '%06d' "$count")
printf '%s\0' "$name" "$@" >"$record"
if [[ $name == "${STUB_FAIL_CMD:-}" && " $* " == *"${STUB_FAIL_ARG:-}"* ]]; then
    echo "stub: $name fails as the test asked" >&2
    exit 42
fi
if [[ $name == "${STUB_TERM_CMD:-}" ]]; then
    kill -TERM "$PPID"  # as systemd would stop cloud-final: signal the script mid-step
fi
inside() { [[ $1 == "$STUB_ROOT"/* ]]; }
case $name in
    install)
        for arg; do
            if [[ $arg == /dev/stdin ]]; then /usr/bin/cat >"$record.stdin"; fi
        done ;;
    tee) /usr/bin/cat >"$record.stdin" ;;
    chmod) if inside "${!#}"; then exec /usr/bin/chmod "$@"; fi ;;
    mktemp) exec /usr/bin/mktemp -d -p "$STUB_ROOT/tmp" ;;
    id)
        case "$*" in
            "-u ubuntu"|"-g ubuntu") echo 1000 ;;
            runner) [[ -n ${STUB_RUNNER_EXISTS:-} ]] || exit 1 ;;
            *) exit 1 ;;
        esac ;;
    # What /home/runner is: "" (nothing there), "directory", "symbolic link" ...
    stat) [[ -n ${STUB_HOME_KIND:-} ]] || exit 1; printf '%s\n' "$STUB_HOME_KIND" ;;
    cloud-init)
        if [[ " $* " == *" --help "* ]]; then
            printf '%s\n' "${STUB_CLOUD_INIT_HELP:-usage: cloud-init clean [--logs] [--seed]}"
        fi ;;
    python3) exec "$STUB_PYTHON" "$@" ;;
    sha256sum) exec /usr/bin/sha256sum "$@" ;;
    xargs) exec /usr/bin/xargs "$@" ;;
    find) if [[ $1 == /var/lib/cloud ]]; then printf '%s\0' "$STUB_SCRIPT"; fi ;;
    shred)
        for arg; do
            if inside "$arg"; then /usr/bin/shred --zero --remove -- "$arg"; fi
        done ;;
    curl)
        out= url=
        while (($#)); do
            case $1 in
                --output) out=$2; shift 2 ;;
                https://*) url=$1; shift ;;
                *) shift ;;
            esac
        done
        case $url in
            https://api.github.com/*) data=$STUB_ROOT/release.json ;;
            "$STUB_SCRIPT_URL") data=$STUB_ROOT/user-script ;;
            *.tar.gz) data=$STUB_ROOT/runner.tar.gz ;;
            *) data=/dev/null ;;
        esac
        if [[ -n $out ]] && inside "$out"; then /usr/bin/cp "$data" "$out"; fi ;;
    systemctl)
        if [[ $1 == poweroff ]]; then /usr/bin/cp "$STUB_ROOT/console" "$record.console"; fi ;;
esac
exit 0
"""

COMMANDS = (
    "apt-get",
    "chmod",
    "chown",
    "cloud-init",
    "curl",
    "dd",
    "dpkg",
    "find",
    "fstrim",
    "getent",
    "groupadd",
    "hostnamectl",
    "id",
    "install",
    "journalctl",
    "ln",
    "loginctl",
    "mktemp",
    "modprobe",
    "npm",
    "poweroff",
    "python3",
    "rm",
    "rmdir",
    "runuser",
    "sed",
    "sha256sum",
    "shred",
    "snap",
    "stat",
    "sync",
    "sysctl",
    "systemctl",
    "tar",
    "tee",
    "truncate",
    "useradd",
    "usermod",
    "xargs",
)

# The script the user's script URL serves here: it records what it was given.
USER_SCRIPT = """#!{python}
import json, os, sys
with open(os.path.join(os.environ["STUB_ROOT"], "user-script-saw.json"), "w") as out:
    json.dump({{"env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv}}, out)
sys.exit({status})
"""


@dataclasses.dataclass
class Call:
    argv: list[str]
    stdin: str | None
    console_at_poweroff: str | None

    @property
    def line(self) -> str:
        return " ".join(self.argv)


@dataclasses.dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    console: str
    calls: list[Call]
    root: Path
    script: Path

    def index(self, *argv: str) -> int:
        """Return the position of the first call that starts with argv."""
        for position, call in enumerate(self.calls):
            if call.argv[: len(argv)] == list(argv):
                return position
        raise AssertionError(f"no call {argv}; calls: {[c.line for c in self.calls]}")

    def ran(self, *argv: str) -> bool:
        return any(call.argv[: len(argv)] == list(argv) for call in self.calls)

    def steps_begun(self) -> list[str]:
        prefix = "grib: step "
        return [
            line[len(prefix) :].split()[0]
            for line in self.stdout.splitlines()
            if line.startswith(prefix)
        ]

    def user_script_saw(self) -> dict[str, object]:
        saw: dict[str, object] = json.loads((self.root / "user-script-saw.json").read_text())
        return saw


def release_json(version: str, arch: str, digest: str | None, body: str = "") -> str:
    name = f"actions-runner-linux-{arch}-{version}.tar.gz"
    return json.dumps(
        {"tag_name": f"v{version}", "body": body, "assets": [{"name": name, "digest": digest}]}
    )


SHA = hashlib.sha256(TARBALL).hexdigest()


def run(
    root: Path,
    options: userdata.UserDataOptions,
    *,
    fail: tuple[str, str] | None = None,
    term: str | None = None,
    release: str | None = None,
    user_script_status: int = 0,
    stub_env: dict[str, str] | None = None,
) -> Run:
    """Render options and run the script with stand-ins under root."""
    stubs = root / "bin"
    for directory in (stubs, root / "calls", root / "tmp"):
        directory.mkdir(parents=True)
    (stubs / "stub").write_text(STUB)
    (stubs / "stub").chmod(0o755)
    for command in COMMANDS:
        (stubs / command).symlink_to("stub")
    (root / "count").write_text("0\n")
    (root / "console").write_text("")
    (root / "runner.tar.gz").write_bytes(TARBALL)
    (root / "release.json").write_text(
        release or release_json("2.321.0", options.arch.github, f"sha256:{SHA}")
    )
    (root / "user-script").write_text(
        USER_SCRIPT.format(python=sys.executable, status=user_script_status)
    )

    rendered = userdata.render_user_data(options)
    # The one line that names the serial device points at a file instead; refuse to run the
    # script at all if that substitution did not happen.
    device = next(line for line in rendered.splitlines() if line.startswith("readonly GRIB_CON"))
    rendered = rendered.replace(
        device, f"readonly GRIB_CONSOLE={shlex.quote(str(root / 'console'))}", 1
    )
    assert f"GRIB_CONSOLE={shlex.quote(str(root / 'console'))}" in rendered
    script = root / "part-001"
    script.write_text(rendered)

    env = {
        "PATH": str(stubs),
        "HOME": str(root),
        "LC_ALL": "C.UTF-8",
        "STUB_ROOT": str(root),
        "STUB_PYTHON": sys.executable,
        "STUB_SCRIPT": str(script),
        "STUB_SCRIPT_URL": options.script_url or "",
    }
    if fail:
        env["STUB_FAIL_CMD"], env["STUB_FAIL_ARG"] = fail
    if term:
        env["STUB_TERM_CMD"] = term
    env.update(stub_env or {})
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
    for record in sorted(p for p in (root / "calls").iterdir() if p.name.isdigit()):
        stdin = record.with_name(record.name + ".stdin")
        console = record.with_name(record.name + ".console")
        calls.append(
            Call(
                argv=record.read_text().split("\0")[:-1],
                stdin=stdin.read_text() if stdin.exists() else None,
                console_at_poweroff=console.read_text() if console.exists() else None,
            )
        )
    return Run(
        returncode=result.returncode,
        stdout=result.stdout,
        stderr=result.stderr,
        console=(root / "console").read_text(),
        calls=calls,
        root=root,
        script=script,
    )


SECRETS = {"API_TOKEN": "tok-SECRET-1", "DEPLOY_KEY": "key-SECRET-2"}


def full_options(**kwargs: object) -> userdata.UserDataOptions:
    values: dict[str, object] = {
        "base": platforms.parse_base("jammy"),
        "arch": platforms.parse_arch("x64"),
        "nonce": NONCE,
        "runner_version": "2.321.0",
        "proxy": "squid.internal:3128",
        "script_url": SCRIPT_URL,
        "script_secrets": SECRETS,
    }
    values.update(kwargs)
    return userdata.UserDataOptions(**values)  # type: ignore[arg-type]


def test_success_runs_every_step_in_order_then_marker_then_poweroff(tmp_path: Path) -> None:
    result = run(tmp_path, full_options())
    assert result.returncode == 0, result.stderr
    assert "command not found" not in result.stderr
    assert result.steps_begun() == list(userdata.STEPS)
    # Exactly one marker line on the console, after the facts the verification compares
    # with, and both are there before the power-off request.
    facts = marker.facts_line(NONCE, {"machine-id": "unknown", "runner-version": "2.321.0"})
    assert result.console == f"{facts}\n{marker.success_line(NONCE)}\n"
    assert marker.parse_facts(result.console, NONCE) == {"runner-version": "2.321.0"}
    assert marker.parse_console(result.console, NONCE) == marker.Marker(success=True)
    assert result.calls[-1].argv == ["systemctl", "poweroff"]
    assert result.calls[-1].console_at_poweroff == result.console
    assert result.index("hostnamectl", "set-hostname", "github-runner") == 0
    assert (
        result.index("apt-get", "-y", "-q")
        < result.index("systemctl", "disable")
        < result.index("tar", "-xzf")
        < result.index("usermod")
        < result.index("cloud-init")
    )
    apt = [c.argv[-1] for c in result.calls if c.argv[0] == "apt-get"]
    assert apt[:3] == ["update", "upgrade", "update"]  # the last: after adding gh's repository
    assert result.ran("cloud-init", "clean", "--logs", "--seed", "--machine-id")
    assert result.ran("useradd", "--non-unique", "--uid", "1000", "--gid", "1000")
    assert result.ran("ln", "-sfnT", "/home/ubuntu", "/home/runner")
    assert result.ran("usermod", "--append", "--groups", "docker,lxd,sudo", "ubuntu")
    assert result.ran("loginctl", "enable-linger", "ubuntu")
    assert result.ran("chown", "ubuntu:ubuntu", "/usr/local/bin")
    assert result.ran("snap", "install", "yq")
    assert result.ran("apt-get", "-y", "-q") and any(
        c.argv[0] == "apt-get" and c.argv[-2:] == ["purge", "unattended-upgrades"]
        for c in result.calls
    )


def test_cleanup_overwrites_the_script_itself_and_bash_still_finishes(tmp_path: Path) -> None:
    result = run(tmp_path, full_options())
    assert result.returncode == 0, result.stderr
    # The real shred ran on the running script (it holds the secrets) during cleanup...
    assert not result.script.exists()
    # ...and bash still ran every command after it, from what it had already read.
    assert result.index("shred") < result.index("cloud-init") < result.index("journalctl")
    assert result.console.splitlines()[-1:] == [marker.success_line(NONCE)]


def test_free_space_is_discarded_after_the_secrets_are_shredded(tmp_path: Path) -> None:
    result = run(tmp_path, full_options())
    assert result.returncode == 0, result.stderr
    # Last in the cleanup: every secret file is shredded and removed before the free blocks
    # (which may hold cloud-init's earlier copies of the user-data) are discarded.
    shredded = max(i for i, c in enumerate(result.calls) if c.argv[0] == "shred")
    vacuumed = result.index("journalctl", "--vacuum-size=1")
    assert (
        shredded < vacuumed < result.index("fstrim", "/") < result.index("systemctl", "poweroff")
    )
    assert not result.ran("dd")


def test_free_space_is_zeroed_where_the_disk_takes_no_discard(tmp_path: Path) -> None:
    result = run(tmp_path, full_options(), fail=("fstrim", "/"))
    assert result.returncode == 0, result.stderr
    zeros = result.index("dd", "if=/dev/zero", "of=/grib-zero-fill")
    removed = result.index("rm", "-f", "--", "/grib-zero-fill")
    assert result.index("fstrim") < zeros < removed < result.index("systemctl", "poweroff")
    assert "free space overwritten with zeros" in result.stdout


def test_secrets_reach_only_the_user_scripts_environment(tmp_path: Path) -> None:
    options = full_options()
    result = run(tmp_path, options)
    assert result.returncode == 0, result.stderr
    saw = result.user_script_saw()
    env = saw["env"]
    assert isinstance(env, dict)
    for name, value in SECRETS.items():
        assert env[name] == value
    assert env["https_proxy"] == "http://squid.internal:3128"
    seen = [result.stdout, result.stderr, result.console]
    seen += [call.line for call in result.calls]
    seen += [call.stdin or "" for call in result.calls]
    for secret in options.script_secrets.values():
        assert not any(secret in text for text in seen)
    # The script file the user script came from is removed after it ran.
    assert result.ran("rm", "-f", "--")


HOSTILE = hostile_values(NONCE)


def test_hostile_secret_values_arrive_verbatim_and_inert(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    planted = [value.replace("echo pwned", f"echo pwned > {canary}") for value in HOSTILE]
    secrets = {f"HOSTILE_{index}": value for index, value in enumerate(planted)}
    result = run(tmp_path / "run", full_options(script_secrets=secrets))
    assert result.returncode == 0, result.stderr
    env = result.user_script_saw()["env"]
    assert isinstance(env, dict)
    for name, value in secrets.items():
        assert env[name] == value, name
    assert not canary.exists()
    assert result.console.splitlines()[-1:] == [marker.success_line(NONCE)]


def test_hostile_script_url_is_fetched_verbatim(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    url = f"https://scripts.example/a$(echo${{IFS}}pwned>{canary})`id`'\"?x=1;y"
    result = run(tmp_path / "run", full_options(script_url=url))
    assert result.returncode == 0, result.stderr
    assert any(call.argv[0] == "curl" and call.argv[-1] == url for call in result.calls)
    assert not canary.exists()


# A command that only the named step runs, made to fail.
FAILING_COMMAND = {
    "hostname": ("hostnamectl", ""),
    "proxy": ("systemctl", "restart snapd.service"),
    "apt": ("apt-get", " upgrade "),
    "packages": ("apt-get", " install "),
    "system": ("modprobe", ""),
    "runner": ("tar", ""),
    "users": ("usermod", ""),
    "script": ("curl", SCRIPT_URL),
    "cleanup": ("cloud-init", "clean"),
}


@pytest.mark.parametrize("step", userdata.STEPS)
def test_a_failing_step_is_named_on_the_console_and_the_vm_still_powers_off(
    tmp_path: Path, step: str
) -> None:
    result = run(tmp_path, full_options(), fail=FAILING_COMMAND[step])
    assert result.returncode == 42
    assert result.console == marker.failure_line(NONCE, step) + "\n"
    assert marker.parse_console(result.console, NONCE) == marker.Marker(False, step)
    # No step after the failing one began.
    begun = result.steps_begun()
    assert begun == list(userdata.STEPS[: userdata.STEPS.index(step) + 1])
    assert result.calls[-1].argv == ["systemctl", "poweroff"]
    assert result.calls[-1].console_at_poweroff == result.console
    assert f"grib: step {step} failed (exit status 42)" in result.stderr


def test_a_failing_user_script_fails_the_script_step(tmp_path: Path) -> None:
    result = run(tmp_path, full_options(), user_script_status=3)
    assert result.returncode == 3
    assert result.console == marker.failure_line(NONCE, "script") + "\n"
    assert not result.ran("cloud-init")


def test_sigterm_mid_step_still_reports_that_step_and_powers_off(tmp_path: Path) -> None:
    result = run(tmp_path, full_options(), term="usermod")
    assert result.returncode == 143
    assert result.console == marker.failure_line(NONCE, "users") + "\n"
    assert result.steps_begun()[-1] == "users"
    assert result.calls[-1].argv == ["systemctl", "poweroff"]


def test_poweroff_falls_back_to_a_forced_one(tmp_path: Path) -> None:
    result = run(tmp_path, full_options(), fail=("systemctl", "poweroff"))
    assert result.returncode == 0
    assert result.calls[-1].argv == ["poweroff", "--force"]
    assert result.console.splitlines()[-1:] == [marker.success_line(NONCE)]


def test_runner_checksum_mismatch_fails_the_runner_step(tmp_path: Path) -> None:
    wrong = release_json("2.321.0", "x64", "sha256:" + "0" * 64)
    result = run(tmp_path, full_options(), release=wrong)
    assert result.console == marker.failure_line(NONCE, "runner") + "\n"
    assert "does not match the SHA-256 GitHub publishes" in result.stdout
    assert not result.ran("tar")


def test_runner_checksum_from_the_release_notes_is_checked(tmp_path: Path) -> None:
    body = f"- x <!-- BEGIN SHA linux-arm64 -->{SHA}<!-- END SHA linux-arm64 -->\n"
    notes = release_json("2.321.0", "arm64", None, body)
    result = run(tmp_path, full_options(arch=platforms.parse_arch("arm64")), release=notes)
    assert result.returncode == 0, result.stderr
    assert "matches the SHA-256 GitHub publishes" in result.stdout
    tarball = next(c for c in result.calls if c.argv[0] == "curl" and ".tar.gz" in c.line)
    assert tarball.argv[-1] == (
        "https://github.com/actions/runner/releases/download/v2.321.0/"
        "actions-runner-linux-arm64-2.321.0.tar.gz"
    )
    wrong_notes = body.replace(SHA, "f" * 64)
    bad = run(
        tmp_path / "bad",
        full_options(arch=platforms.parse_arch("arm64")),
        release=release_json("2.321.0", "arm64", None, wrong_notes),
    )
    assert bad.console == marker.failure_line(NONCE, "runner") + "\n"


def test_unpublished_checksum_is_reported_not_fatal(tmp_path: Path) -> None:
    result = run(tmp_path, full_options(), release=release_json("2.321.0", "x64", None))
    assert result.returncode == 0, result.stderr
    assert (
        "actions/runner publishes no SHA-256 for actions-runner-linux-x64-2.321.0.tar.gz: "
        "not verified"
    ) in result.stdout


def test_latest_runner_is_resolved_in_the_vm(tmp_path: Path) -> None:
    newer = release_json("2.330.1", "x64", f"sha256:{SHA}")
    result = run(tmp_path, full_options(runner_version=None), release=newer)
    assert result.returncode == 0, result.stderr
    urls = [c.argv[-1] for c in result.calls if c.argv[0] == "curl"]
    assert "https://api.github.com/repos/actions/runner/releases/latest" in urls
    assert (
        "https://github.com/actions/runner/releases/download/v2.330.1/"
        "actions-runner-linux-x64-2.330.1.tar.gz"
    ) in urls
    assert "runner 2.330.1 from actions/runner in /home/ubuntu/actions-runner" in result.stdout


def test_pinned_runner_must_be_what_github_answers(tmp_path: Path) -> None:
    other = release_json("2.330.1", "x64", f"sha256:{SHA}")
    result = run(tmp_path, full_options(), release=other)
    urls = [c.argv[-1] for c in result.calls if c.argv[0] == "curl"]
    assert "https://api.github.com/repos/actions/runner/releases/tags/v2.321.0" in urls
    assert result.console == marker.failure_line(NONCE, "runner") + "\n"
    assert "asked for runner 2.321.0, GitHub answered 2.330.1" in result.stdout


PROXY_FILES = [
    "/etc/apt/apt.conf.d/95github-runner-proxy",
    "/etc/systemd/system/docker.service.d/95-github-runner-proxy.conf",
    "/etc/systemd/system/snapd.service.d/95-github-runner-proxy.conf",
]


def written(result: Run, path: str) -> tuple[str, list[str]]:
    """Return what the script wrote to `path` (through install or tee) and that call's argv."""
    for call in result.calls:
        if call.argv[0] in ("install", "tee") and call.argv[-1] == path:
            assert call.stdin is not None
            return call.stdin, call.argv
    raise AssertionError(f"nothing wrote {path}")


def test_proxy_with_credentials_serves_the_build_and_is_gone_before_the_snapshot(
    tmp_path: Path,
) -> None:
    proxy = "http://bob:s%40cr3t@10.1.2.3:8080"
    result = run(tmp_path, full_options(proxy=proxy))
    assert result.returncode == 0, result.stderr
    apt, apt_call = written(result, PROXY_FILES[0])
    assert apt == f'Acquire::http::Proxy "{proxy}";\nAcquire::https::Proxy "{proxy}";\n'
    assert apt_call[:3] == ["install", "-D", "-m"] and apt_call[3] == "0600"
    # systemd would read %40 as a specifier: the drop-ins double it.
    for path in PROXY_FILES[1:]:
        unit, _ = written(result, path)
        assert '"HTTPS_PROXY=http://bob:s%%40cr3t@10.1.2.3:8080"' in unit
    assert (
        result.index("systemctl", "daemon-reload")
        < result.index("systemctl", "restart", "snapd.service")
        < result.index("apt-get")
    )
    # The build and the user script have it in their environment...
    env = result.user_script_saw()["env"]
    assert isinstance(env, dict)
    assert env["https_proxy"] == env["HTTP_PROXY"] == proxy
    # ...but no command line and no output ever held the credentials...
    for text in [c.line for c in result.calls] + [result.stdout, result.stderr, result.console]:
        assert "s%40cr3t" not in text and "bob:" not in text
    # ...nothing wrote them where the image keeps them for jobs...
    with pytest.raises(AssertionError, match="nothing wrote"):
        written(result, "/etc/environment")
    assert not result.ran("snap", "set")
    # ...and the cleanup removes every place a proxy may live, after the user script ran.
    removed = result.index("rm", "-f", "--", *PROXY_FILES)
    script = next(i for i, c in enumerate(result.calls) if c.argv[-1] == SCRIPT_URL)
    assert script < removed < result.index("cloud-init", "clean")
    assert result.ran("snap", "unset", "system", "proxy.http", "proxy.https", "proxy.no-proxy")
    sed = next(c for c in result.calls if c.argv[0] == "sed")
    assert sed.argv[1:3] == ["-i", "-E"] and sed.argv[-1] == "/etc/environment"
    assert removed < result.calls.index(sed) < result.index("cloud-init", "clean")


def test_hostile_proxy_passwords_arrive_verbatim_and_inert(tmp_path: Path) -> None:
    for index, password in enumerate(hostile_proxy_passwords()):
        proxy = f"http://user:{password}@proxy.example:3128"
        root = tmp_path / str(index)
        result = run(root, full_options(proxy=proxy))
        assert result.returncode == 0, (password, result.stderr)
        env = result.user_script_saw()["env"]
        assert isinstance(env, dict)
        assert env["https_proxy"] == proxy, password
        assert not (root / "pwned").exists(), password
        assert not any(password in call.line for call in result.calls), password


def test_hostile_values_as_proxy_password_are_refused_or_inert() -> None:
    for value in hostile_values(NONCE):
        proxy = f"http://user:{value}@proxy.example:3128"
        try:
            rules.normalize_proxy(proxy)
        except ValueError as exc:
            # The message names the problem, never the password.
            assert len(value) < 3 or value not in str(exc), value
            continue
        # Accepted: only URL characters, quoted like every other value (shellcheck tests it).
        assert urllib.parse.quote(value, safe="!$&'()*+,;=:%") == value


def test_without_proxy_or_script_those_steps_do_not_exist(tmp_path: Path) -> None:
    options = full_options(
        base=platforms.parse_base("noble"), proxy=None, script_url=None, script_secrets={}
    )
    result = run(tmp_path, options)
    assert result.returncode == 0, result.stderr
    # Whatever else put a proxy in the image, the cleanup still removes it.
    assert result.ran("rm", "-f", "--", *PROXY_FILES)
    assert result.ran("snap", "unset", "system", "proxy.http")
    assert result.steps_begun() == [s for s in userdata.STEPS if s not in ("proxy", "script")]
    assert not result.ran("snap", "set")
    assert not (tmp_path / "user-script-saw.json").exists()
    # noble has a current gh in its archive: no third-party repository.
    assert not any("cli.github.com" in call.line for call in result.calls)
    assert result.console.splitlines()[-1:] == [marker.success_line(NONCE)]


def test_system_tuning_files(tmp_path: Path) -> None:
    result = run(tmp_path, full_options())
    assert result.returncode == 0, result.stderr
    by_path = {c.argv[-1]: c.stdin for c in result.calls if c.argv[0] == "install" and c.stdin}
    assert by_path["/etc/sysctl.d/60-github-runner-network.conf"] == (
        "net.core.default_qdisc=fq\nnet.ipv4.tcp_congestion_control=bbr\n"
    )
    assert by_path["/etc/modules-load.d/github-runner-bbr.conf"] == "tcp_bbr\n"
    assert 'APT::Periodic::Unattended-Upgrade "0";' in (
        by_path["/etc/apt/apt.conf.d/20auto-upgrades"] or ""
    )
    assert result.ran("systemctl", "disable", "apt-daily.timer", "apt-daily-upgrade.timer")


def test_cloud_init_clean_drops_its_configs_where_it_knows_how(tmp_path: Path) -> None:
    help_text = "usage: cloud-init clean [--logs] [--seed] [--configs {all,ssh_config,network}]"
    knows = run(tmp_path / "new", full_options(), stub_env={"STUB_CLOUD_INIT_HELP": help_text})
    assert knows.returncode == 0, knows.stderr
    assert knows.ran("cloud-init", "clean", "--logs", "--seed", "--machine-id", "--configs", "all")
    older = run(tmp_path / "old", full_options())
    assert older.returncode == 0, older.stderr
    assert older.ran("cloud-init", "clean", "--logs", "--seed", "--machine-id")
    assert not any("--configs" in c.argv for c in older.calls)
    assert "this cloud-init's clean has no --configs" in older.stdout


def test_runner_charm_contents_are_installed(tmp_path: Path) -> None:
    result = run(tmp_path, full_options())
    assert result.returncode == 0, result.stderr
    install = next(c for c in result.calls if c.argv[0] == "apt-get" and "install" in c.argv)
    for package in ("nftables", "cargo", "rustc", "pkg-config", "docker.io", "jq"):
        assert package in install.argv
    assert result.ran("snap", "install", "aproxy", "--channel=edge")
    otel = result.index("snap", "install", "opentelemetry-collector", "--channel=stable")
    assert result.index("snap", "disable", "opentelemetry-collector") == otel + 1
    # npm's yarn, after npm itself is installed; its cache does not stay in the image.
    assert result.calls.index(install) < result.index("npm", "install", "--global", "yarn")
    assert result.ran("npm", "cache", "clean", "--force")
    assert result.ran("install", "-d", "-o", "ubuntu", "-g", "ubuntu", "-m", "0755")
    assert result.ran("chown", "-R", "ubuntu:ubuntu", "/home/ubuntu/actions-runner")


def test_an_existing_runner_user_is_made_the_alias(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        full_options(),
        stub_env={"STUB_RUNNER_EXISTS": "1", "STUB_HOME_KIND": "directory"},
    )
    assert result.returncode == 0, result.stderr
    assert not result.ran("useradd")
    assert result.ran(
        "usermod", "--non-unique", "--uid", "1000", "--gid", "1000", "--append", "--groups",
        "docker,lxd,sudo", "--home", "/home/runner", "--shell", "/bin/bash", "runner",
    )  # fmt: skip
    # The empty directory gives way to the link.
    assert result.index("rmdir", "--", "/home/runner") < result.index(
        "ln", "-sfnT", "/home/ubuntu", "/home/runner"
    )


@pytest.mark.parametrize(
    ("kind", "fail", "message"),
    [
        ("directory", ("rmdir", ""), "/home/runner is a directory that is not empty"),
        ("regular file", None, "/home/runner is a regular file"),
    ],
)
def test_a_home_runner_that_cannot_become_the_link_fails_the_users_step(
    tmp_path: Path, kind: str, fail: tuple[str, str] | None, message: str
) -> None:
    result = run(tmp_path, full_options(), fail=fail, stub_env={"STUB_HOME_KIND": kind})
    assert result.console == marker.failure_line(NONCE, "users") + "\n"
    assert message in result.stdout
    assert not result.ran("ln")


def test_the_runner_comes_from_the_runner_binary_repo(tmp_path: Path) -> None:
    repo = "canonical/github-actions-runner"
    options = full_options(arch=platforms.parse_arch("s390x"), runner_binary_repo=repo)
    result = run(tmp_path, options)
    assert result.returncode == 0, result.stderr
    urls = [c.argv[-1] for c in result.calls if c.argv[0] == "curl"]
    assert f"https://api.github.com/repos/{repo}/releases/tags/v2.321.0" in urls
    assert (
        f"https://github.com/{repo}/releases/download/v2.321.0/"
        "actions-runner-linux-s390x-2.321.0.tar.gz"
    ) in urls
    assert "matches the SHA-256 GitHub publishes" in result.stdout
    install = next(c for c in result.calls if c.argv[0] == "apt-get" and "install" in c.argv)
    assert "dotnet-runtime-8.0" in install.argv


def test_a_repo_without_a_tarball_for_the_arch_is_refused_clearly(tmp_path: Path) -> None:
    repo = "someone/runner-fork"
    # The release lists an x64 tarball only.
    release = release_json("2.321.0", "x64", f"sha256:{SHA}")
    options = full_options(arch=platforms.parse_arch("ppc64le"), runner_binary_repo=repo)
    result = run(tmp_path, options, release=release)
    assert result.console == marker.failure_line(NONCE, "runner") + "\n"
    assert (
        f"release v2.321.0 of {repo} has no actions-runner-linux-ppc64le-2.321.0.tar.gz: it "
        "publishes no ppc64le runner"
    ) in result.stdout
    assert not any(c.argv[0] == "curl" and ".tar.gz" in c.line for c in result.calls)


def test_armhf_is_an_arm64_vm_with_the_32_bit_runner_through_multiarch(tmp_path: Path) -> None:
    options = full_options(base=platforms.parse_base("noble"), arch=platforms.parse_arch("armhf"))
    result = run(tmp_path, options)
    assert result.returncode == 0, result.stderr
    apt_update = next(
        i for i, c in enumerate(result.calls) if c.argv[0] == "apt-get" and c.argv[-1] == "update"
    )
    assert result.index("dpkg", "--add-architecture", "armhf") < apt_update
    install = next(c for c in result.calls if c.argv[0] == "apt-get" and "install" in c.argv)
    for package in ("libc6:armhf", "libatomic1:armhf", "libicu74:armhf", "cargo", "rustc"):
        assert package in install.argv
    tarball = next(c for c in result.calls if c.argv[0] == "curl" and ".tar.gz" in c.line)
    assert tarball.argv[-1].endswith("/actions-runner-linux-arm-2.321.0.tar.gz")
    rendered = userdata.render_user_data(options)
    assert "readonly GRIB_CONSOLE=/dev/ttyAMA0\n" in rendered


def _valid_combinations() -> list[tuple[platforms.Base, platforms.Arch, bool, bool]]:
    combos = []
    for base, arch, proxy, script in itertools.product(
        (platforms.parse_base(b) for b in platforms.RUNNER_BASES),
        platforms.ARCHES,
        (False, True),
        (False, True),
    ):
        try:
            platforms.check_pair(base, arch)
        except ValueError:
            continue
        combos.append((base, arch, proxy, script))
    return combos


@pytest.mark.parametrize(
    ("base", "arch", "proxy", "script"),
    _valid_combinations(),
    ids=lambda v: getattr(v, "codename", None) or getattr(v, "github", None) or str(v),
)
def test_every_combination_runs_to_the_success_marker(
    tmp_path: Path, base: platforms.Base, arch: platforms.Arch, proxy: bool, script: bool
) -> None:
    extra: dict[str, object] = {} if script else {"script_url": None, "script_secrets": {}}
    options = full_options(
        base=base,
        arch=arch,
        proxy="http://u:p%40ss@squid.internal:3128" if proxy else None,
        runner_binary_repo="canonical/github-actions-runner",
        **extra,
    )
    result = run(tmp_path, options)
    assert result.returncode == 0, result.stderr
    assert "command not found" not in result.stderr
    assert result.console.splitlines()[-1:] == [marker.success_line(NONCE)]
    expected = [s for s in userdata.STEPS if (s != "proxy" or proxy) and (s != "script" or script)]
    assert result.steps_begun() == expected
    assert not any("p%40ss" in call.line for call in result.calls)
