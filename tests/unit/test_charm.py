"""Scenario tests of the charm's event handling."""

from ops import testing

from charm import GithubRunnerImageBuilderCharm


def test_install_without_relation_blocks() -> None:
    ctx = testing.Context(GithubRunnerImageBuilderCharm)
    state = ctx.run(ctx.on.install(), testing.State())
    assert state.unit_status == testing.BlockedStatus("image integration required")
