"""Build metrics: the history a result folds into, the exporter as a real HTTP service, the
systemd unit the charm installs, and the figures after real (fake-CLI) builds."""

import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops import testing
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import job
import machine_files
import metrics
import metrics_service
import unit_paths
from catalogue import Catalogue
from charm import GithubRunnerImageBuilderCharm
from charm_helpers import (
    PASSWORD,
    REQUIRER_PASSWORD,
    RUNNERS,
    SCRIPT_SECRET,
    SRC,
    UNIT,
    Machine,
    base_state,
    emit,
    image_relation,
    script_secret,
    wait_until,
)
from job_records import JobRecords
from metrics_service import ServiceManager as RealServiceManager  # before the fixture fakes it

Ctx = testing.Context[GithubRunnerImageBuilderCharm]
T0 = datetime.datetime(2026, 12, 1, 6, 0, tzinfo=datetime.timezone.utc)
P = metrics.PREFIX


def _result(run_id: str, minutes: int, **fields: object) -> job.BuildResult:
    return job.BuildResult.model_validate(
        {
            "run_id": run_id,
            "started_at": T0,
            "finished_at": T0 + datetime.timedelta(minutes=minutes),
            "exit_code": 0,
            **fields,
        }
    )


def _image(base: str, cloud: str, image_id: str) -> dict[str, str]:
    return {"name": f"p-{base}-x64", "base": base, "arch": "x64", "cloud": cloud, "id": image_id}


def _failure(base: str, step: str) -> dict[str, str]:
    return {"base": base, "arch": "x64", "cloud": "c_u", "step": step, "error": "boom"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of an exposition as (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def exposition(records: metrics.Records, now: datetime.datetime) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.RecordsCollector(lambda: records, clock=lambda: now))
    return generate_latest(registry).decode()


# --- the history ---------------------------------------------------------------------------


def test_fold_counts_outcomes_steps_and_durations_once_per_run() -> None:
    ok = _result("r1", 20, images=[_image("noble", "c_u", "i1"), _image("jammy", "c_u", "j1")])
    partial = _result(
        "r2",
        50,
        exit_code=1,
        images=[_image("noble", "c_u", "i2")],
        failures=[_failure("jammy", "boot")],
    )
    crashed = _result("r3", 130, exit_code=-1, error="the CLI timed out")
    history = metrics.History().fold(ok, []).fold(partial, ["i2", "j1"])
    history = history.fold(partial, ["i2", "j1"])  # the same result again: no change
    history = history.fold(crashed, ["i2", "j1"])

    assert history.outcomes == {"success": 1, "partial": 1, "failed": 1}
    assert history.last_success == {
        "noble/x64": T0 + datetime.timedelta(minutes=50),
        "jammy/x64": T0 + datetime.timedelta(minutes=20),
    }
    assert {(f.base, f.step): f.count for f in history.failures} == {
        ("jammy", "boot"): 1,
        ("", metrics.JOB_STEP): 1,
    }
    assert history.consecutive_failed == 2
    assert history.last_duration == 130 * 60
    assert history.duration_sum == (20 + 50 + 130) * 60
    # 20 min ≤ 1200 s, 50 min ≤ 3600 s, 130 min ≤ 9000 s
    buckets = dict(zip(metrics.DURATION_BUCKETS, history.duration_buckets[:-1], strict=True))
    assert (buckets[1200.0], buckets[3600.0], buckets[9000.0]) == (1, 1, 1)
    assert sum(history.duration_buckets) == 3
    # Build times are kept only for images still served: i1 was replaced by i2.
    assert set(history.built_at) == {"i2", "j1"}

    # Counts under other bucket bounds (an older charm's) restart rather than crash a scrape.
    older = metrics.History.model_validate({"duration_buckets": [1, 2], "duration_sum": 9.0})
    assert (sum(older.duration_buckets), older.duration_sum) == (0, 0.0)

    reset = history.fold(_result("r4", 10, images=[_image("noble", "c_u", "i3")]), ["i3"])
    assert reset.consecutive_failed == 0


def _times(base: str, **steps: float) -> dict[str, object]:
    return {"base": base, "arch": "x64", "steps": steps}


def test_fold_observes_each_verification_that_ran() -> None:
    first = _result(
        "r1",
        30,
        images=[_image("noble", "c_u", "i1")],
        failures=[_failure("jammy", "verify")],
        timings=[_times("noble", wait=900.0, verify=140.5), _times("jammy", verify=700.0)],
    )
    # A build that failed before verifying has no verify time: nothing is observed for it.
    second = _result(
        "r2", 20, exit_code=1, failures=[_failure("noble", "wait")], timings=[_times("noble")]
    )
    history = metrics.History().fold(first, ["i1"]).fold(second, ["i1"])

    assert history.last_verify == {"noble/x64": 140.5, "jammy/x64": 700.0}
    assert history.verify_sum == 840.5
    buckets = dict(zip(metrics.VERIFY_BUCKETS, history.verify_buckets[:-1], strict=True))
    assert (buckets[180.0], buckets[900.0], sum(history.verify_buckets)) == (1, 1, 2)

    got = samples(exposition(_records(history), T0))
    assert got[(f"{P}_verify_duration_seconds_count", ())] == 2
    assert got[(f"{P}_verify_duration_seconds_sum", ())] == 840.5
    assert got[(f"{P}_verify_duration_seconds_bucket", (("le", "120.0"),))] == 0
    assert got[(f"{P}_verify_duration_seconds_bucket", (("le", "180.0"),))] == 1
    assert got[(f"{P}_verify_duration_seconds_bucket", (("le", "+Inf"),))] == 2
    last = f"{P}_last_verify_duration_seconds"
    assert got[(last, (("arch", "x64"), ("base", "jammy")))] == 700.0

    # Counts under other bounds (an older charm's file) restart rather than crash a scrape.
    older = metrics.History.model_validate({"verify_buckets": [3], "verify_sum": 9.0})
    assert (sum(older.verify_buckets), older.verify_sum) == (0, 0.0)


def _records(history: metrics.History) -> metrics.Records:
    return metrics.Records(
        history=history, current=None, last_result=None, queued=False, catalogue={}
    )


def test_a_lookup_delivers_images_but_is_no_build() -> None:
    found = _result("r1", 1, kind="lookup", images=[_image("noble", "c_u", "old")])
    history = metrics.History(consecutive_failed=2).fold(found, ["old"])
    assert history.outcomes == {"lookup": 1}
    assert history.last_success == {}
    assert history.consecutive_failed == 2
    assert history.last_duration is None
    assert history.built_at == {"old": found.finished_at}


def test_requirer_since_starts_with_the_first_cloud_and_ends_with_the_last() -> None:
    t1, t2 = T0, T0 + datetime.timedelta(hours=1)
    history = metrics.History().with_requirers(0, 6, t1)
    assert history.requirer_since is None
    history = history.with_requirers(1, 6, t1).with_requirers(2, None, t2)
    assert (history.requirer_since, history.requirer_clouds) == (t1, 2)
    assert history.build_interval_hours == 6  # an invalid config keeps the last known value
    assert history.with_requirers(0, 6, t2).requirer_since is None


# --- the figures -----------------------------------------------------------------------------


def test_families_compute_ages_and_job_state_at_scrape_time() -> None:
    built = _result("r1", 20, images=[_image("noble", "c_u", "i1"), _image("noble", "d_v", "i9")])
    history = metrics.History().fold(built, ["i1", "i9"]).with_requirers(2, 6, T0)
    running = job.RunRecord(run_id="r2", started_at=T0 + datetime.timedelta(hours=6))
    records = metrics.Records(
        history=history,
        current=running,
        last_result=built,
        queued=True,
        # "lookup/x64" has an id of unknown build time: no age for it rather than a guess.
        catalogue={"c_u": {"noble/x64": "i1"}, "d_v": {"noble/x64": "i9", "jammy/x64": "x"}},
    )
    now = T0 + datetime.timedelta(hours=7, minutes=20)
    got = samples(exposition(records, now))

    age = f"{P}_served_image_age_seconds"
    assert got[(age, (("arch", "x64"), ("base", "noble"), ("cloud", "c_u")))] == 7 * 3600
    assert not [k for k in got if k[0] == age and ("base", "jammy") in k[1]]
    assert got[(f"{P}_published_images", (("cloud", "d_v"),))] == 2
    success = (f"{P}_last_success_timestamp_seconds", (("arch", "x64"), ("base", "noble")))
    assert got[success] == built.finished_at.timestamp()
    assert got[(f"{P}_build_running", ())] == 1
    assert got[(f"{P}_build_queued", ())] == 1
    assert got[(f"{P}_build_started_timestamp_seconds", ())] == running.started_at.timestamp()
    assert got[(f"{P}_builds_total", (("outcome", "success"),))] == 1
    assert got[(f"{P}_builds_total", (("outcome", "failed"),))] == 0
    assert got[(f"{P}_build_duration_seconds_count", ())] == 1
    assert got[(f"{P}_build_duration_seconds_bucket", (("le", "1200.0"),))] == 1
    assert got[(f"{P}_build_duration_seconds_bucket", (("le", "900.0"),))] == 0
    assert got[(f"{P}_build_interval_seconds", ())] == 6 * 3600
    assert got[(f"{P}_build_timeout_seconds", ())] == job.BUILD_TIMEOUT
    assert got[(f"{P}_requirer_since_timestamp_seconds", ())] == T0.timestamp()

    # The running job's result has arrived: not running any more.
    done = _result("r2", 400, images=[])
    idle = samples(exposition(records.model_copy(update={"last_result": done}), now))
    assert idle[(f"{P}_build_running", ())] == 0
    assert not [k for k in idle if k[0] == f"{P}_build_started_timestamp_seconds"]


# --- the exporter, a real HTTP service -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[tuple[Path, int, subprocess.Popen[bytes]]]:
    state = tmp_path / "state"
    state.mkdir()
    port = _free_port()
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": f"{SRC}:{SRC.parent / 'lib'}",
        f"{job.SECRET_ENV_PREFIX}TOKEN": SCRIPT_SECRET,  # must never be served
    }
    process = subprocess.Popen(
        [
            sys.executable,
            str(SRC / "metrics_exporter.py"),
            *("--charm-dir", str(tmp_path), "--unit", UNIT),
            *("--port", str(port), "--state-dir", str(state)),
        ],
        env=env,
        stderr=subprocess.PIPE,
    )

    def serving() -> bool:
        try:
            _scrape(port)
        except OSError:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            return False
        return True

    wait_until(serving, limit=30)
    yield state, port, process
    if process.poll() is None:
        process.kill()
        process.wait()
    if process.stderr:
        process.stderr.close()


def test_exporter_serves_the_records_as_they_change_and_nothing_secret(
    exporter: tuple[Path, int, subprocess.Popen[bytes]],
) -> None:
    state, port, process = exporter
    before = samples(_scrape(port))
    assert before[(f"{P}_build_running", ())] == 0
    assert before[(f"{P}_builds_total", (("outcome", "success"),))] == 0

    # The charm's records, written the way the charm writes them.
    paths = unit_paths.Paths.under(state.parent, runner=SRC / "job_runner.py")
    clouds = {"clouds": {"builder": {"auth": {"password": PASSWORD}}, "c_u": {"auth": {}}}}
    paths.clouds_yaml.write_text(json.dumps(clouds))
    paths.clouds_yaml.chmod(0o600)
    result = _result("r1", 25, images=[_image("noble", "c_u", "img-1")])
    paths.result.write_text(result.model_dump_json())
    paths.current.write_text(job.RunRecord(run_id="r2", started_at=T0).model_dump_json())
    reader = JobRecords(paths)
    reader.save_catalogue(Catalogue.from_json(json.dumps({"c_u": {"noble/x64": "img-1"}})))
    history = metrics.History().fold(result, ["img-1"]).with_requirers(1, 6, T0)
    metrics.save_history(paths.state_dir, history)
    (state / "unreadable.json").write_text("{")  # a broken file elsewhere changes nothing

    text = _scrape(port)
    after = samples(text)
    assert after[(f"{P}_build_running", ())] == 1  # r2 started, its result not written yet
    assert after[(f"{P}_builds_total", (("outcome", "success"),))] == 1
    assert after[(f"{P}_published_images", (("cloud", "c_u"),))] == 1
    assert (
        f"{P}_served_image_age_seconds",
        (("arch", "x64"), ("base", "noble"), ("cloud", "c_u")),
    ) in after
    for secret in (PASSWORD, SCRIPT_SECRET, REQUIRER_PASSWORD, "password"):
        assert secret not in text

    # A corrupt record is skipped, not a crash: the service keeps serving the rest.
    paths.result.write_text("{not json")
    assert samples(_scrape(port))[(f"{P}_builds_total", (("outcome", "success"),))] == 1

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def test_exporter_listens_on_loopback_only(
    exporter: tuple[Path, int, subprocess.Popen[bytes]],
) -> None:
    _, port, _ = exporter
    addresses = {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)}
    outside = [a for a in addresses if not a.startswith("127.") and ":" not in a]
    for address in outside:
        with socket.socket() as sock, pytest.raises(OSError):
            sock.settimeout(2)
            sock.connect((address, port))


def test_the_unit_files_command_serves_as_systemd_would_run_it(tmp_path: Path) -> None:
    """ExecStart and Environment taken from the unit file, a clean environment, cwd /."""
    port = _free_port()
    text = metrics_service.unit_file(
        SRC.parent,
        UNIT,
        Path(sys.executable),
        metrics_service.charm_import_path(SRC.parent, sys.path, Path.cwd()),
        port,
    )
    lines = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    python_path = lines["Environment"].removeprefix("PYTHONPATH=")
    process = subprocess.Popen(
        lines["ExecStart"].split(),
        env={"PYTHONPATH": python_path},
        cwd="/",
        stderr=subprocess.PIPE,
    )
    try:

        def serving() -> bool:
            try:
                return f"{P}_build_timeout_seconds" in _scrape(port)
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                return False

        wait_until(serving, limit=30)
    finally:
        process.terminate()
        code = process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()
    assert code == 0


def test_exporter_usage_error_exits_2() -> None:
    run = subprocess.run(
        [sys.executable, str(SRC / "metrics_exporter.py"), "--unit", UNIT],
        env={"PYTHONPATH": f"{SRC}:{SRC.parent / 'lib'}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert "--charm-dir" in run.stderr


# --- the service the charm installs -----------------------------------------------------------


@pytest.fixture
def no_venv(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let install run without CLI wheels (the venv install is tested elsewhere)."""
    monkeypatch.setattr(machine_files.MachineFiles, "_install_venv", lambda self: None)


def _systemctl(machine: Machine) -> list[str]:
    log = machine.home / "systemctl.log"
    return log.read_text().splitlines() if log.exists() else []


def test_install_and_upgrade_enable_and_restart_the_service(
    ctx: Ctx, machine: Machine, no_venv: None
) -> None:
    name = "github-runner-image-builder-0-metrics.service"
    ctx.run(ctx.on.install(), base_state())
    unit = (machine.home / "systemd" / name).read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    words = exec_start.split()
    # The charm's own interpreter and its own copy of the exporter (Scenario's charm folder).
    assert words[0] == f"ExecStart={sys.executable}"
    charm_dir = words[words.index("--charm-dir") + 1]
    assert words[1] == f"{charm_dir}/src/metrics_exporter.py"
    assert f"{charm_dir}/src" in unit.split("PYTHONPATH=")[1].split("\n")[0].split(":")
    assert f"--unit {UNIT} --address 127.0.0.1 --port {metrics.PORT}" in exec_start
    assert "WantedBy=multi-user.target" in unit  # enabled: back after a reboot
    assert "Restart=always" in unit
    assert _systemctl(machine) == ["daemon-reload", f"enable {name}", f"restart {name}"]

    # An upgrade rewrites the unit and restarts it on the new charm's code.
    (machine.home / "systemd" / name).write_text("stale")
    ctx.run(ctx.on.upgrade_charm(), base_state())
    rewritten = (machine.home / "systemd" / name).read_text()
    upgraded_dir = rewritten.split("--charm-dir ")[1].split()[0]
    assert rewritten == unit.replace(charm_dir, upgraded_dir)
    assert _systemctl(machine)[3:] == ["daemon-reload", f"enable {name}", f"restart {name}"]


def test_remove_stops_disables_and_deletes_the_service(
    ctx: Ctx, machine: Machine, no_venv: None
) -> None:
    name = "github-runner-image-builder-0-metrics.service"
    state = ctx.run(ctx.on.install(), base_state())
    ctx.run(ctx.on.remove(), state)
    assert not (machine.home / "systemd" / name).exists()
    assert _systemctl(machine)[3:] == [f"stop {name}", f"disable {name}", "daemon-reload"]


def test_the_service_imports_what_the_hook_does(tmp_path: Path) -> None:
    charm = tmp_path / "charm"
    (charm / "venv").mkdir(parents=True)
    # Juju's dispatch: relative PYTHONPATH=lib:venv from the charm folder, the script's src.
    sys_path = [str(charm / "src"), "lib", "venv", "/usr/lib/python3.12", ""]
    assert metrics_service.charm_import_path(charm, sys_path, cwd=charm) == [
        str(charm / "src"),
        str(charm / "lib"),
        str(charm / "venv"),
    ]


def test_the_unit_file_passes_systemd_analyze(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    text = metrics_service.unit_file(
        SRC.parent, UNIT, Path(sys.executable), [str(SRC), str(SRC.parent / "lib")], metrics.PORT
    )
    path = tmp_path / metrics_service.service_name(UNIT)
    path.write_text(text)
    run = subprocess.run(
        [analyze, "verify", str(path)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert path.name not in run.stderr, run.stderr  # no unknown key or bad value in our file


def test_a_failing_systemctl_does_not_fail_the_install(
    ctx: Ctx, machine: Machine, no_venv: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise OSError("systemctl: not found")

    monkeypatch.setattr(
        metrics_service, "ServiceManager", lambda: RealServiceManager(daemon_reload=broken)
    )
    out = ctx.run(ctx.on.install(), base_state())
    assert not isinstance(out.unit_status, testing.ErrorStatus)


def test_finished_builds_reach_the_history_once(ctx: Ctx, machine: Machine) -> None:
    relation = image_relation()
    machine.plan(build={"fail_bases": ["jammy"]})
    state = base_state(relation, **{"base-image": "noble,jammy"})
    out = ctx.run(ctx.on.action("run"), state)
    machine.wait_for_callbacks(1)
    out = emit(ctx, out, "build_finished")
    out = ctx.run(ctx.on.update_status(), out)  # a later hook sees the same result: no change

    history = metrics.load_history(machine.paths.state_dir)
    assert history.outcomes == {"partial": 1}
    assert set(history.last_success) == {"noble/x64"}
    assert [(f.base, f.step, f.count) for f in history.failures] == [("jammy", "wait", 1)]
    assert history.consecutive_failed == 1
    assert history.requirer_clouds == 1
    assert history.requirer_since is not None
    assert history.build_interval_hours == 6
    assert set(history.built_at) == {f"img-{RUNNERS}-noble-1"}
    text = machine.paths.state_dir.joinpath(metrics.HISTORY_FILE).read_text()
    assert oct(machine.paths.state_dir.joinpath(metrics.HISTORY_FILE).stat().st_mode)[-3:] == "600"
    for secret in (PASSWORD, REQUIRER_PASSWORD):
        assert secret not in text


def test_an_unwritable_history_fails_no_hook(
    ctx: Ctx, machine: Machine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    machine.paths.state_dir.mkdir(parents=True)
    monkeypatch.setattr(metrics, "save_history", full)
    out = ctx.run(ctx.on.update_status(), base_state(image_relation()))
    assert not isinstance(out.unit_status, testing.ErrorStatus)
    assert "build figures not recorded: [Errno 28] No space left on device" in caplog.text


def test_script_secrets_never_reach_the_history(ctx: Ctx, machine: Machine) -> None:
    secret = script_secret()
    state = base_state(image_relation(), **{"script-url": "https://example.com/s.sh"})
    state = testing.State(
        config={**state.config, "script-secret-id": secret.id},
        secrets={*state.secrets, secret},
        relations=state.relations,
        leader=True,
    )
    out = ctx.run(ctx.on.action("run"), state)
    machine.wait_for_callbacks(1)
    emit(ctx, out, "build_finished")
    text = machine.paths.state_dir.joinpath(metrics.HISTORY_FILE).read_text()
    assert SCRIPT_SECRET not in text
    assert PASSWORD not in text
