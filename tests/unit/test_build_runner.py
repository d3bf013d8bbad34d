"""The detached build runner's own decisions (the launch itself is tested through the charm)."""

import json
import sys
import time
from pathlib import Path

import pytest

import build_runner


def _args(*extra: str) -> list[str]:
    return [
        "--lock-fd",
        "7",
        "--run-id",
        "r1",
        "--started-at",
        "2026-11-23T14:02:00+00:00",
        "--result",
        "/tmp/result.json",
        "--juju-exec",
        "/usr/bin/juju-exec",
        "--unit",
        "app/0",
        "--kill-after",
        "60",
        "--secret-prefix",
        "IMAGE_BUILDER_SECRET_",
        *extra,
    ]


def test_cli_command_line_follows_the_double_dash() -> None:
    args = build_runner.parse_args(_args("--", "/venv/bin/cli", "--os-cloud", "builder", "build"))
    assert args.cli == ["/venv/bin/cli", "--os-cloud", "builder", "build"]
    assert args.lookups == []


def test_missing_cli_command_line_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        build_runner.parse_args(_args("--"))


def test_result_lists_images_and_failures_of_a_partial_build() -> None:
    args = build_runner.parse_args(_args("--", "cli"))
    answer = {
        "images": [{"name": "n", "base": "noble", "arch": "x64", "cloud": "c", "id": "i"}],
        "failures": [{"base": "jammy", "arch": "x64", "cloud": "c", "step": "boot", "error": "e"}],
    }
    result = build_runner.make_result(args, 1, json.dumps(answer), "")
    assert result["images"] == answer["images"]
    assert result["failures"] == answer["failures"]
    assert result["error"] == ""
    assert result["exit_code"] == 1
    assert result["run_id"] == "r1"


@pytest.mark.parametrize(
    ("code", "stdout", "error"),
    [
        (2, "usage: ...", "the CLI exited 2 without a JSON answer; see the build log"),
        (0, "[1, 2]", "the CLI exited 0 without a JSON answer; see the build log"),
        (1, '{"images": [], "failures": []}', "the CLI exited 1; see the build log"),
    ],
)
def test_result_of_a_cli_without_usable_answer_is_an_error(
    code: int, stdout: str, error: str
) -> None:
    args = build_runner.parse_args(_args("--", "cli"))
    assert build_runner.make_result(args, code, stdout, "")["error"] == error


def _script(path: Path, body: str) -> str:
    path.write_text(f"#!{sys.executable}\nimport json, signal, sys, time\n{body}")
    path.chmod(0o755)
    return str(path)


def test_cli_overrunning_its_budget_is_stopped_and_its_report_kept(tmp_path: Path) -> None:
    # Like the real CLI: SIGTERM makes it clean up, print its report and exit 1.
    cli = _script(
        tmp_path / "cli",
        "def stop(*_):\n"
        "    print(json.dumps({'images': [], 'failures': [{'error': 'cancelled'}]}))\n"
        "    sys.exit(1)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "time.sleep(30)\n",
    )
    code, stdout, error = build_runner.run_cli([cli], kill_after=1.0, grace=20)
    assert code == -1
    assert error == "the CLI ran longer than 1 s and was stopped"
    args = build_runner.parse_args(_args("--", "cli"))
    result = build_runner.make_result(args, code, stdout, error)
    assert result["failures"] == [{"error": "cancelled"}]
    assert result["error"] == error


def test_cli_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    stubborn = _script(
        tmp_path / "stubborn", "signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(30)\n"
    )
    began = time.monotonic()
    code, stdout, error = build_runner.run_cli([stubborn], kill_after=1.0, grace=1.0)
    assert (code, stdout) == (-1, "")
    assert error == (
        "the CLI ran longer than 1 s and was killed when it had not stopped 1 s after SIGTERM"
    )
    assert time.monotonic() - began < 10


def test_result_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    build_runner.write_result(path, {"run_id": "r1"})
    assert json.loads(path.read_text()) == {"run_id": "r1"}
    assert path.stat().st_mode & 0o777 == 0o600
