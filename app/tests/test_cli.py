"""Tests of the command line parsing."""

import pytest

from github_runner_image_builder import cli


def test_no_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2
