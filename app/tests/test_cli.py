"""Tests of the command line: parsing, usage errors, each command's output and exit code."""

import dataclasses
import datetime
import hashlib
import json
import logging
from pathlib import Path

import pytest

from app.tests.fakes import FakeCloud, qcow2, render
from github_runner_image_builder import cli, logs
from github_runner_image_builder.cli import build as cli_build
from github_runner_image_builder.cloud.client import Cloud
from github_runner_image_builder.guest import marker, userdata
from github_runner_image_builder.images import revisions


def usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv, env={}, deps=cli.Deps(render=render))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    return err


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert "required: COMMAND" in usage_error(capsys, [])


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("build", "latest-build-id", "init", "clean", "user-data"):
        assert command in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["build"], "build needs --os-cloud NAME"),
        (["clean"], "clean needs --os-cloud"),
        (["latest-build-id", "x"], "latest-build-id needs --os-cloud"),
        (["--os-cloud", "c", "build", "--base", "bionic"], "unknown Ubuntu base 'bionic'"),
        (["--os-cloud", "c", "build", "--arch", "x64,sparc"], "unknown architecture 'sparc'"),
        (["--os-cloud", "c", "build", "--keep-revisions", "0"], "whole number ≥ 1, got '0'"),
        (["--os-cloud", "c", "build", "--timeout", "soon"], "duration 'soon'"),
        (["--os-cloud", "c", "build", "--prefix=-x"], "prefix '-x' must be"),
        (["--os-cloud", "c", "build", "--base", ","], "comma-separated list"),
        (["--os-cloud", "c", "build", "--cloud-images-url", "ftp://m"], "must be an http"),
        (["user-data", "--runner-version", "latest"], "invalid runner version 'latest'"),
        (["user-data", "--script-url", "http://e.com/s"], "expected https://host/path"),
        (["user-data", "--proxy", "ftp://p:1"], "scheme 'ftp' is not http or https"),
        (["user-data", "--proxy", "a b:1"], "invalid proxy 'a b:1'"),
        (["user-data", "--arch", "s390x"], "actions/runner publishes no s390x runner"),
        (["--os-cloud", "c", "build", "--arch", "x64,ppc64le"], "publishes no ppc64le runner"),
        (["user-data", "--arch", "armhf", "--base", "jammy"], "armhf images need Ubuntu noble"),
        (["user-data", "--runner-binary-repo", "a/b/c"], "invalid runner binary repository"),
        (["user-data", "--runner-binary-repo", "$(x)/y"], "expected a GitHub repository"),
        (["--os-cloud", "c", "build", "--base", "noble@x"], "invalid cloud image serial 'x'"),
        (["--os-cloud", "c", "build", "--base", "noble,noble@20260715"], "noble is given twice"),
        (["user-data", "--proxy", "http://u:pw@p:1"], "pass the proxy in IMAGE_BUILDER_PROXY"),
        (["user-data", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_are_one_line_naming_the_problem(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert message in usage_error(capsys, argv)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("45m", 2700.0), ("2h", 7200.0), ("1.5m", 90.0)],
)
def test_durations(value: str, seconds: float) -> None:
    assert cli.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["--", "-x", "--help", "--base=jammy"])
def test_an_option_value_that_looks_like_an_option_stays_a_value(value: str) -> None:
    args = cli.build_parser().parse_args(
        ["--os-cloud=c", "build", f"--flavor={value}", f"--network={value}"]
    )
    spec = cli_build.spec_of(args)
    assert (spec.site.flavor, spec.site.network) == (value, value)
    assert [b.codename for b in spec.image.bases] == ["noble"]


def test_os_cloud_after_the_command_and_defaults() -> None:
    spec = cli_build.spec_of(cli.build_parser().parse_args(["build", "--os-cloud", "c"]))
    assert spec.site.cloud == "c"
    assert [b.codename for b in spec.image.bases] == ["noble"]
    assert [a.github for a in spec.image.arches] == ["x64"]
    assert spec.site.timeout == 3600.0
    assert spec.prune.keep_revisions == 5
    assert spec.upload.clouds == () and spec.prune.protect == frozenset()
    args = cli.build_parser().parse_args(
        ["build", "--os-cloud=c", "--upload-clouds", "", "--protect", "a, b"]
    )
    spec = cli_build.spec_of(args)
    assert spec.upload.clouds == () and spec.prune.protect == {"a", "b"}
    args = cli.build_parser().parse_args(
        ["--os-cloud", "c", "build", "--base", "22.04,noble,jammy", "--arch", "amd64,aarch64"]
    )
    spec = cli_build.spec_of(args)
    assert spec.site.cloud == "c"
    assert [b.codename for b in spec.image.bases] == ["jammy", "noble"]
    assert [a.github for a in spec.image.arches] == ["x64", "arm64"]


def test_user_data_needs_no_cloud_and_gets_secrets_from_env(
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {"IMAGE_BUILDER_SECRET_TOKEN": "abc", "OTHER": "x", "IMAGE_BUILDER_SECRET_B_2": "hello"}
    argv = [
        "user-data",
        "--base",
        "jammy",
        "--arch",
        "arm64",
        "--proxy",
        "proxy.example:3128",
        "--runner-version",
        "v2.321.0",
        "--script-url",
        "https://example.com/s.sh",
    ]
    assert cli.main(argv, env=env, deps=cli.Deps(render=render)) == 0
    out = capsys.readouterr().out
    assert out.startswith("#!/bin/bash\nGRIB_NONCE=")
    assert "# jammy\n# arm64 2.321.0 proxy.example:3128\n" in out
    assert "export TOKEN=<16 chars>\nexport B_2=<14 chars>\n" in out


def test_user_data_redacts_secrets_unless_asked(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["user-data", "--script-url", "https://example.com/s.sh"]
    env = {"IMAGE_BUILDER_SECRET_TOKEN": "hunter2-value"}
    assert cli.main(argv, env=env) == 0
    out = capsys.readouterr().out
    assert "hunter2-value" not in out
    assert "export TOKEN='<redacted:TOKEN>'" in out
    assert cli.main([*argv, "--show-secrets"], env=env) == 0
    assert "export TOKEN=hunter2-value" in capsys.readouterr().out


def test_user_data_renders_the_real_script(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["user-data", "--base", "noble", "--arch", "x64", "--proxy", "proxy.example:3128"]
    argv += ["--runner-version", "2.321.0", "--script-url", "https://example.com/s.sh"]
    assert cli.main(argv, env={"IMAGE_BUILDER_SECRET_TOKEN": "tok"}) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("#!/bin/bash")
    assert marker.find_nonce(captured.out) is not None
    assert "2.321.0" in captured.out
    assert "tok" not in captured.err


def test_reserved_secret_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--os-cloud", "c", "build", "--script-url", "https://example.com/s.sh"]
    with pytest.raises(SystemExit) as exc:
        cli.main(argv, env={"IMAGE_BUILDER_SECRET_PATH": "x"}, deps=deps_for({}))
    assert exc.value.code == 2
    assert "'PATH' is reserved" in capsys.readouterr().err


def test_bad_secret_variable_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        env = {"IMAGE_BUILDER_SECRET_A-B": "x"}
        cli.main(["user-data"], env=env, deps=cli.Deps(render=render))
    assert exc.value.code == 2
    assert "IMAGE_BUILDER_SECRET_A-B: 'A-B' is not a shell variable name" in (
        capsys.readouterr().err
    )


def mirror(tmp_path: Path) -> str:
    directory = tmp_path / "noble" / "current"
    directory.mkdir(parents=True)
    data = qcow2(4000)
    (directory / "noble-server-cloudimg-amd64.img").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    (directory / "SHA256SUMS").write_text(f"{digest} *noble-server-cloudimg-amd64.img\n")
    return tmp_path.as_uri()


def deps_for(clouds: dict[str, FakeCloud]) -> cli.Deps:
    def open_cloud(name: str) -> Cloud:
        return clouds[name]

    return cli.Deps(open_cloud=open_cloud, render=render, sleep=lambda s: None)


def test_build_prints_json_and_logs_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud = FakeCloud("c")
    cloud.polls_to_shutoff = 1
    cloud.polls_to_active = 1
    log_file = tmp_path / "build.log"
    argv = ["--os-cloud", "c", "--log-file", str(log_file), "build", "--prefix", "p"]
    argv += ["--cloud-images-url", mirror(tmp_path)]
    code = cli.main(argv, env={"IMAGE_BUILDER_SECRET_T": "hush"}, deps=deps_for({"c": cloud}))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)
    assert doc["failures"] == []
    assert [(i["name"], i["cloud"]) for i in doc["images"]] == [("p-noble-x64", "c")]
    logged = log_file.read_text()
    for step in ("base-image", "security-group", "server", "wait", "snapshot", "copy", "prune"):
        assert f"noble-x64 {step}: done in " in logged
    assert logged.split(" ", 1)[0].endswith("Z")  # timestamped
    assert "hush" not in logged + captured.err


def test_build_failure_exits_one_with_the_failure_in_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud = FakeCloud("c", guest="failure:script")
    argv = ["--os-cloud", "c", "build", "--cloud-images-url", mirror(tmp_path), "--timeout", "5m"]
    assert cli.main(argv, env={}, deps=deps_for({"c": cloud})) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["images"] == []
    [failure] = doc["failures"]
    assert failure["step"] == "wait" and "'script'" in failure["error"]
    assert (failure["base"], failure["arch"], failure["cloud"]) == ("noble", "x64", "c")


def test_latest_build_id(capsys: pytest.CaptureFixture[str]) -> None:
    cloud = FakeCloud("c")
    older = cloud.add_image("n", status="active")
    cloud.add_image("n", status="queued")
    assert cli.main(["--os-cloud", "c", "latest-build-id", "n"], deps=deps_for({"c": cloud})) == 0
    assert capsys.readouterr().out == f"{older}\n"
    assert cli.main(["--os-cloud", "c", "latest-build-id", "x"], deps=deps_for({"c": cloud})) == 0
    assert capsys.readouterr().out == ""


def test_latest_build_id_unreachable_cloud(capsys: pytest.CaptureFixture[str]) -> None:
    cloud = FakeCloud("c")
    cloud.fail["images"] = ConnectionError("keystone unreachable")
    assert cli.main(["--os-cloud", "c", "latest-build-id", "n"], deps=deps_for({"c": cloud})) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "keystone unreachable" in captured.err


def test_init_uploads_base_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cloud = FakeCloud("c")
    argv = ["--os-cloud", "c", "init", "--cloud-images-url", mirror(tmp_path), "--prefix", "p"]
    assert cli.main(argv, deps=deps_for({"c": cloud})) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["base_images"][0]["name"] == "p-base-noble-amd64"
    assert doc["base_images"][0]["fetched"] is True
    assert cli.main(argv, deps=deps_for({"c": cloud})) == 0
    assert json.loads(capsys.readouterr().out)["base_images"][0]["fetched"] is False


def test_init_missing_arch_in_mirror_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--os-cloud", "c", "init", "--arch", "arm64", "--cloud-images-url", mirror(tmp_path)]
    assert cli.main(argv, deps=deps_for({"c": FakeCloud("c")})) == 1
    doc = json.loads(capsys.readouterr().out)
    assert "SHA256SUMS lists no noble-server-cloudimg-arm64.img" in doc["failures"][0]["error"]


def test_clean_deletes_leftovers_of_that_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    cloud = FakeCloud("c")
    group = cloud.create_security_group("p-builder-noble-x64-1", "")
    base = cloud.add_image("p-base-noble-amd64")
    server = cloud.create_server(
        "p-builder-noble-x64-1",
        image_id=base,
        flavor_id="f",
        network_id="n",
        security_group_id=group,
        user_data="",
        metadata={},
    )
    stuck = cloud.add_image("p-noble-x64", status="saving")
    good = cloud.add_image("p-noble-x64")
    foreign = cloud.add_image("q-noble-x64", status="queued")
    argv = ["--os-cloud", "c", "clean", "--prefix", "p"]
    assert cli.main(argv, deps=deps_for({"c": cloud})) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["servers"] == [f"{server} p-builder-noble-x64-1"]
    assert doc["security_groups"] == [f"{group} p-builder-noble-x64-1"]
    assert doc["images"] == [f"{stuck} p-noble-x64 (saving)"]
    assert doc["errors"] == []
    assert set(cloud.image_info) == {base, good, foreign}
    assert cloud.server_list == {} and cloud.groups == {}


def _server(cloud: FakeCloud, name: str, created_at: str = "", build_id: str = "") -> str:
    group = cloud.create_security_group(name, revisions.group_description("x", build_id))
    cloud.group_created[group] = created_at
    base = cloud.add_image("p-base-noble-amd64")
    metadata = {revisions.BUILD_ID: build_id} if build_id else {}
    server = cloud.create_server(
        name,
        image_id=base,
        flavor_id="f",
        network_id="n",
        security_group_id=group,
        user_data="",
        metadata=metadata,
    )
    cloud.server_list[server].created_at = created_at
    return server


OURS = {revisions.BUILT_BY_US: "2026-01-01T00:00:00Z"}


def test_an_upload_cloud_sweep_spares_the_requirers_servers_groups_and_images(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A requirer's project: a server and group that happen to carry our builder prefix, and
    # an unfinished image of our name that it uploaded itself (no properties of ours).
    cloud = FakeCloud("req")
    server = _server(cloud, "p-builder-x", "2020-01-01T00:00:00Z")
    theirs = cloud.add_image("p-noble-x64", status="queued", created_at="2020-01-01T00:00:00Z")
    ours = cloud.add_image(
        "p-noble-x64", status="queued", created_at="2020-01-01T00:00:00Z", properties=OURS
    )
    argv = ["--os-cloud=req", "clean", "--prefix=p", "--older-than=10800", "--upload-cloud"]
    assert cli.main(argv, deps=deps_for({"req": cloud})) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {
        "servers": [],
        "security_groups": [],
        "images": [f"{ours} p-noble-x64 (queued)"],
        "errors": [],
    }
    assert server in cloud.server_list and len(cloud.groups) == 1
    assert theirs in cloud.image_info and ours not in cloud.image_info
    assert "servers" not in cloud.calls and "security_groups" not in cloud.calls


def test_the_sweep_judges_age_by_the_clouds_clock_not_the_units(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The unit's clock runs 3 h ahead of the cloud's: a builder the cloud created 1 h ago
    # looks 4 h old to the unit, yet it is live and stays.
    cloud = FakeCloud("c")
    cloud_now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=3)
    cloud.cloud_time = cloud_now

    def ago(hours: float) -> str:
        return (cloud_now - datetime.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")

    live = _server(cloud, "p-builder-live", ago(1))
    dead = _server(cloud, "p-builder-dead", ago(4))
    argv = ["--os-cloud=c", "clean", "--prefix=p", "--older-than=3h"]
    assert cli.main(argv, deps=deps_for({"c": cloud})) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["servers"] == [f"{dead} p-builder-dead"]
    assert list(cloud.server_list) == [live]
    assert list(cloud.groups.values()) == ["p-builder-live"]


def test_a_cloud_without_a_clock_is_not_swept_by_age(capsys: pytest.CaptureFixture[str]) -> None:
    cloud = FakeCloud("c")
    cloud.cloud_time = None
    server = _server(cloud, "p-builder-x", "2020-01-01T00:00:00Z")
    argv = ["--os-cloud=c", "clean", "--prefix=p", "--older-than=3h"]
    assert cli.main(argv, deps=deps_for({"c": cloud})) == 1
    assert "no readable Date header" in capsys.readouterr().err
    assert server in cloud.server_list


def test_clean_by_build_id_takes_that_build_whatever_its_age(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cloud = FakeCloud("c")
    young = cloud.cloud_time.strftime("%Y-%m-%dT%H:%M:%SZ")  # type: ignore[union-attr]
    mine = _server(cloud, "p-builder-mine", young, build_id="run-1")
    mine_group = cloud.server_list[mine].group_id
    other = _server(cloud, "p-builder-other", young, build_id="run-2")
    tagged = {**OURS, revisions.BUILD_ID: "run-1"}
    stuck = cloud.add_image("p-noble-x64", status="saving", created_at=young, properties=tagged)
    argv = ["--os-cloud=c", "clean", "--prefix=p", "--older-than=3h", "--build-id=run-1"]
    assert cli.main(argv, deps=deps_for({"c": cloud})) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["servers"] == [f"{mine} p-builder-mine"]
    assert doc["security_groups"] == [f"{mine_group} p-builder-mine"]
    assert list(cloud.server_list) == [other]
    assert list(cloud.groups.values()) == ["p-builder-other"]
    assert stuck not in cloud.image_info


@pytest.mark.parametrize("build_id", ["", "a b", "x" * 65, "run_1", "ü"])
def test_a_bad_build_id_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], build_id: str
) -> None:
    err = usage_error(capsys, ["--os-cloud=c", "clean", f"--build-id={build_id}"])
    assert "invalid build id" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["user-data", "--proxy=http://u:s3cr/et@squid:3128"],
        ["user-data", "--proxi=http://u:s3cr/et@squid:3128"],
        ["user-data", "--proxy=u:s3cr/et@squid:0"],
        ["user-data", "--proxy=u:s3cret@squid:3128"],
        ["user-data", "--script-url=https://u:s3cr/et@host/a b"],
        ["user-data", "--script-url=http://u:s3cr/et@host/s.sh"],
        ["user-data", "--script-url=https://u:s3cret@host/s.sh"],
        ["--os-cloud=c", "build", "--pro=http://u:s3cr/et@squid:3128"],
    ],
)
def test_usage_errors_never_echo_url_credentials(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    # argparse quotes the offending word itself in some errors (unknown, ambiguous options).
    err = usage_error(capsys, argv)
    assert "s3cr" not in err


def test_unwritable_log_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "missing" / "x.log"
    assert "--log-file" in usage_error(capsys, ["--log-file", str(bad), "user-data"])


def test_user_data_too_long_for_nova_is_a_usage_error_before_any_cloud(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cloud = FakeCloud("c")
    argv = ["--os-cloud", "c", "build", "--script-url", "https://example.com/s.sh"]
    env = {"IMAGE_BUILDER_SECRET_BIG": "x" * 70000}
    with pytest.raises(SystemExit) as exc:
        cli.main(argv, env=env, deps=cli.Deps(open_cloud=lambda n: cloud))
    assert exc.value.code == 2
    assert "more than the 28000 it has room for" in capsys.readouterr().err
    assert cloud.calls == []


PROXY_WITH_CREDENTIALS = "http://builder:pa%24%24word@squid.internal:3128"


def test_a_proxy_with_credentials_comes_from_the_environment_and_is_never_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud = FakeCloud("c")
    log_file = tmp_path / "build.log"
    argv = ["--os-cloud", "c", "--log-file", str(log_file), "--log-level", "DEBUG", "build"]
    argv += ["--prefix", "p", "--cloud-images-url", mirror(tmp_path)]
    env = {cli.PROXY_ENV: PROXY_WITH_CREDENTIALS}
    seen: list[str | None] = []

    def recording_render(options: userdata.UserDataOptions) -> str:
        seen.append(options.proxy)
        return render(options)

    deps = dataclasses.replace(deps_for({"c": cloud}), render=recording_render)
    code = cli.main(argv, env=env, deps=deps)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert set(seen) == {PROXY_WITH_CREDENTIALS}  # the builder's user-data got it whole
    # No output, log line or image property holds the password.
    for text in (captured.out, captured.err, log_file.read_text()):
        assert "pa%24%24word" not in text and "pa$$word" not in text
    for info in cloud.image_info.values():
        assert not any("word" in v for v in info.properties.values())


def test_the_proxy_is_given_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(
            ["user-data", "--proxy", "p:1"],
            env={cli.PROXY_ENV: "q:2"},
            deps=cli.Deps(render=render),
        )
    assert exc.value.code == 2
    assert "give the proxy once" in capsys.readouterr().err


def test_a_bad_proxy_in_the_environment_is_named_without_its_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(
            ["user-data"],
            env={cli.PROXY_ENV: "http://u:hunter2@proxy:99999"},
            deps=cli.Deps(render=render),
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "IMAGE_BUILDER_PROXY" in err and "port" in err
    assert "hunter2" not in err


def test_user_data_redacts_the_proxy_credentials_unless_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {cli.PROXY_ENV: PROXY_WITH_CREDENTIALS}
    assert cli.main(["user-data"], env=env) == 0
    out = capsys.readouterr().out
    assert "pa%24%24word" not in out
    assert "readonly GRIB_PROXY='http://***@squid.internal:3128'" in out
    assert cli.main(["user-data", "--show-secrets"], env=env) == 0
    assert f"readonly GRIB_PROXY={PROXY_WITH_CREDENTIALS}" in capsys.readouterr().out


def pinned_mirror(tmp_path: Path, serial: str) -> str:
    directory = tmp_path / "noble" / serial
    directory.mkdir(parents=True)
    data = qcow2(4100)
    (directory / "noble-server-cloudimg-amd64.img").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    (directory / "SHA256SUMS").write_text(f"{digest} *noble-server-cloudimg-amd64.img\n")
    return tmp_path.as_uri()


def test_a_pinned_serial_is_built_and_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud = FakeCloud("c")
    url = pinned_mirror(tmp_path, "20260715")
    argv = ["--os-cloud", "c", "build", "--prefix", "p", "--base", "noble@20260715"]
    argv += ["--cloud-images-url", url, "--runner-binary-repo", "canonical/github-actions-runner"]
    code = cli.main(argv, env={}, deps=deps_for({"c": cloud}))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    [image] = json.loads(captured.out)["images"]
    assert image["name"] == "p-noble-x64"
    properties = cloud.image_info[image["id"]].properties
    assert properties["grib_base_serial"] == "20260715"
    assert properties["grib_runner_binary_repo"] == "canonical/github-actions-runner"
    [base] = [i for i in cloud.image_info.values() if i.name == "p-base-noble-20260715-amd64"]
    assert base.properties["grib_upstream_serial"] == "20260715"
    assert base.properties["grib_upstream_url"].endswith(
        "/noble/20260715/noble-server-cloudimg-amd64.img"
    )


def test_an_unknown_serial_is_a_clear_failure_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud = FakeCloud("c")
    url = pinned_mirror(tmp_path, "20260715")
    argv = ["--os-cloud", "c", "build", "--base", "noble@20260101", "--cloud-images-url", url]
    assert cli.main(argv, env={}, deps=deps_for({"c": cloud})) == 1
    [failure] = json.loads(capsys.readouterr().out)["failures"]
    assert failure["step"] == "base-image"
    assert "Ubuntu cloud image serial 20260101 of noble is not at" in failure["error"]
    assert "pin a serial listed under" in failure["error"]
    assert not cloud.server_list


def test_the_log_file_is_private_and_its_lines_carry_no_url_credentials(tmp_path: Path) -> None:
    log_file = tmp_path / "cli.log"
    logs.configure("INFO", str(log_file))
    try:
        logging.getLogger("github_runner_image_builder.cli").error(
            "cannot reach %s", "https://u:s3cret@keystone.example:5000/v3"
        )
    finally:
        for handler in logging.getLogger().handlers:
            handler.close()  # configure() drops them without closing: the file would leak
        logs.configure("INFO")
    assert log_file.stat().st_mode & 0o777 == 0o640
    text = log_file.read_text()
    assert "https://***@keystone.example:5000/v3" in text and "s3cret" not in text


def test_a_spec_file_makes_the_build_and_flags_given_win_over_it(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(
        json.dumps(
            {
                "image": {"bases": ["jammy", "noble@20260715"], "prefix": "from-file"},
                "site": {"cloud": "builder", "flavor": "big"},
                "prune": {"keep_revisions": 2, "protect": ["img-1"]},
            }
        )
    )
    args = cli.build_parser().parse_args(["build", f"--spec={spec_file}", "--flavor=small"])
    spec = cli_build.spec_of(args)
    assert spec.site.cloud == "builder"
    assert [(b.codename, b.serial) for b in spec.image.bases] == [
        ("jammy", ""),
        ("noble", "20260715"),
    ]
    assert spec.image.prefix == "from-file" and spec.site.flavor == "small"
    assert spec.prune.keep_revisions == 2 and spec.prune.protect == {"img-1"}
    # What the file leaves out takes the spec's defaults, the same as the flags' help says.
    assert spec.verify.enabled and spec.verify.timeout == 1200.0 and spec.site.timeout == 3600.0


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"site": {"cloud": "b"}, "image": {"bases": ["noble", "noble@20260101"]}}, "image.bases"),
        ({"site": {"cloud": "b"}, "prune": {"keep_revison": 2}}, "prune.keep_revison"),
        ({"site": {"cloud": "b"}, "prune": {"protect": ["-rf"]}}, "prune.protect"),
        ({"site": {"cloud": "b"}, "image": {"script_url": "http://x"}}, "image.script_url"),
        ({"image": {}}, "site"),
        ([], "JSON object"),
    ],
)
def test_a_bad_spec_file_is_a_usage_error_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: object, named: str
) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(document))
    with pytest.raises(SystemExit) as exc:
        cli.main(["build", f"--spec={spec_file}"], env={}, deps=cli.Deps())
    assert exc.value.code == 2
    assert named in capsys.readouterr().err
