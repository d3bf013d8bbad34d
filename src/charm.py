#!/usr/bin/env python3
"""Charm entry point: observes Juju events and turns them into intents."""

import logging

import ops

logger = logging.getLogger(__name__)


class GithubRunnerImageBuilderCharm(ops.CharmBase):
    """Keeps fresh GitHub runner images in OpenStack and publishes their IDs."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        framework.observe(self.on.install, self._on_install)

    def _on_install(self, _: ops.InstallEvent) -> None:
        self.unit.status = ops.BlockedStatus("image integration required")


if __name__ == "__main__":  # pragma: no cover
    ops.main(GithubRunnerImageBuilderCharm)
