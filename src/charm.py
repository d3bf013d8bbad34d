#!/usr/bin/env python3
"""Charm entry point: observes Juju events and wires them to the modules that decide.

Three intents: reconcile (clouds.yaml, cron, published relation data follow the config and the
relations), start a job (detached; never waited for), publish a finished job. The unit status
is chosen once per hook in `collect-status` (src/charm_status.py).

Only the leader builds (schedule, action, new requirers) and keeps the catalogue, in the peer
relation; every unit publishes from it. A unit that finishes a build after it lost leadership
hands the images over through its peer data; the leader takes them in.
"""

import dataclasses
import datetime
import logging
import os
from collections.abc import Sequence

import ops

import charm_status
import job_launcher
import job_plan
import job_records
import machine_files
import metrics_service
import relation_cos
import relation_image
import relation_peers
import unit_paths
from catalogue import Catalogue
from catalogue_sync import CatalogueSync
from config import BuildConfig, ConfigReader, ProxyConfig
from durable_files import WriteProblems
from job import BuildResult, Lookup

logger = logging.getLogger(__name__)


class RunEvent(ops.EventBase):
    """Cron's `juju-exec ... JUJU_DISPATCH_PATH=hooks/run ./dispatch`: a scheduled build."""


class BuildFinishedEvent(ops.EventBase):
    """The job runner's juju-exec callback: a job has ended and left its result."""


class BuilderCharmEvents(ops.CharmEvents):
    """The charm's events plus the two dispatched from outside a Juju hook."""

    run = ops.EventSource(RunEvent)
    build_finished = ops.EventSource(BuildFinishedEvent)


class GithubRunnerImageBuilderCharm(ops.CharmBase):
    """Keeps fresh GitHub runner images in OpenStack and publishes their IDs."""

    on = BuilderCharmEvents()
    _stored = ops.StoredState()  # type: ignore[no-untyped-call]  # ops leaves it untyped

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        # cloud id → when a job last started to serve it (ISO 8601): see job_plan.SERVE_INTERVAL.
        self._stored.set_default(served_at={})
        self.proxy = ProxyConfig.from_env(os.environ)
        self.options = ConfigReader(self.model, self.proxy)
        paths = unit_paths.default_paths(self.charm_dir, self.unit.name)
        self.records = job_records.JobRecords(paths)
        env = self.proxy.environment()
        self.launcher = job_launcher.JobLauncher(paths, self.unit.name, env, self.records)
        self.machine = machine_files.MachineFiles(
            paths, self.unit.name, apt_install=machine_files.apt_install
        )
        self.images = relation_image.ImageRelation(self)
        self.peers = relation_peers.Peers(self)
        # Files this hook could not write (disk full): the unit is Blocked saying so.
        self.write_problems = WriteProblems()
        self.catalogues = CatalogueSync(
            self.peers, self.records, self.images, self.unit.is_leader, self.write_problems
        )
        # Observes its own relation events and upgrade-charm: logs, Loki rules, dashboard.
        self.cos = relation_cos.CosAgentProvider(self, paths.log_dir)
        self._observe(framework)
        # Last, so its end-of-hook record sees what the handlers above did.
        self.metrics = metrics_service.MetricsService(
            self, self.records, self.images.clouds, self.options.build_interval
        )

    # --- event handlers, in the order observed ---------------------------------------------

    def _on_install(self, _: ops.EventBase) -> None:
        self.unit.status = ops.MaintenanceStatus("installing the image builder")
        self.machine.install()
        self._on_config_changed(None)

    def _on_upgrade_charm(self, _: ops.EventBase) -> None:
        self.unit.status = ops.MaintenanceStatus("upgrading the image builder")
        self.machine.install()
        self._migrate()
        self._on_config_changed(None)
        # A cloud the earlier charm never served (two clouds that shared one id) gets its
        # images looked up; clouds that have images are not rebuilt.
        config = self.options.read()
        if config is not None and self.unit.is_leader() and not self.launcher.is_running():
            self._serve_new_clouds(config, list(self.images.clouds()))

    def _on_config_changed(self, _: ops.EventBase | None) -> None:
        config = self._reconcile()
        if config is None or not self.images.clouds() or not self.unit.is_leader():
            return
        built_with = self.peers.fingerprint() or self.records.stored_fingerprint()
        if self._fingerprint(config) != built_with:
            self._start_build(config, "the image settings changed")

    def _on_leader_elected(self, _: ops.EventBase) -> None:
        # The new leader takes over the schedule (in reconcile) and any cloud still unserved,
        # but not one the old leader's running job serves: its result comes as a handover.
        config = self._reconcile()
        if config is not None and self.unit.is_leader() and not self.launcher.is_running():
            elsewhere = self.peers.built_elsewhere()
            self._serve_new_clouds(config, [c for c in self.images.clouds() if c not in elsewhere])

    def _on_build_finished(self, _: ops.EventBase) -> None:
        self._publish_finished()

    def _on_run(self, _: RunEvent) -> None:
        config = self._reconcile()
        if config is not None and self.unit.is_leader():
            self._start_build(config, "schedule")

    def _on_run_action(self, event: ops.ActionEvent) -> None:
        config = self._reconcile()
        if not self.unit.is_leader():
            event.fail(charm_status.STANDBY.format(leader=self._leader_name()))
        elif self.write_problems.first is not None:
            event.fail(self.write_problems.first)
        elif config is None:
            event.fail(f"cannot build until the configuration is fixed: {self.options.problem}")
        elif (outcome := self._start_build(config, "run action")) is not None:
            event.set_results(charm_status.run_results(outcome))
        elif self.write_problems.first is not None:
            event.fail(self.write_problems.first)
        else:
            event.fail(charm_status.NO_CREDENTIALS.format(app=self.app.name))

    def _on_image_relation_changed(self, event: ops.RelationEvent) -> None:
        config = self._reconcile()
        if config is None or not self.unit.is_leader():
            return
        creds = self.images.cloud_of(event.relation)
        if creds is None:
            logger.info(
                "relation %s: not served (all six credential keys not there yet, or its cloud "
                "is an earlier relation's with other credentials)",
                event.relation.id,
            )
        elif self.launcher.is_running():
            # Not queued: the running job's end handler serves clouds it did not include.
            logger.info(
                "relation %s: cloud %s served after the running build",
                event.relation.id,
                creds.cloud_id,
            )
        else:
            # Images built earlier for this cloud (e.g. before a redeploy) may exist: the
            # detached job looks them up first (the CLI's start alone exceeds a hook's time
            # budget) and builds only when one is missing.
            self._serve_new_clouds(config, [creds.cloud_id])

    def _on_image_relation_gone(self, _: ops.RelationEvent) -> None:
        # The relation's requirer (or its last unit) left: clouds.yaml and the data follow.
        self._reconcile()

    def _on_peers_changed(self, _: ops.EventBase) -> None:
        # A standby unit follows the leader's catalogue; the leader takes in handovers.
        self._reconcile()

    def _on_collect_status(self, event: ops.CollectStatusEvent) -> None:
        event.add_status(charm_status.compute_status(self._status_facts()))

    # --- helpers -------------------------------------------------------------------------------

    def _observe(self, framework: ops.Framework) -> None:
        on, image = self.on, self.on[relation_image.RELATION_NAME]
        peers = self.on[relation_peers.PEER_RELATION]
        for handler, events in (
            (self._on_install, [on.install]),
            (self._on_upgrade_charm, [on.upgrade_charm]),
            (self._on_config_changed, [on.config_changed, on.secret_changed]),
            (self._on_leader_elected, [on.leader_elected]),
            (self._on_build_finished, [on.update_status, on.build_finished]),
            (self._on_run, [on.run]),
            (self._on_run_action, [on.run_action]),
            (self._on_image_relation_changed, [image.relation_joined, image.relation_changed]),
            (self._on_image_relation_gone, [image.relation_departed, image.relation_broken]),
            (self._on_peers_changed, [peers.relation_created, peers.relation_joined]),
            (self._on_peers_changed, [peers.relation_changed, peers.relation_departed]),
            (self._on_collect_status, [on.collect_unit_status]),
        ):
            for event in events:
                framework.observe(event, handler)

    def _fingerprint(self, config: BuildConfig) -> str:
        return config.fingerprint(self.peers.fingerprint_key())

    def _leader_name(self) -> str:
        return self.peers.leader() or charm_status.UNKNOWN_LEADER

    def _reconcile(self, built: Catalogue | None = None) -> BuildConfig | None:
        """Make clouds.yaml, cron, the catalogue and the relation data follow the config.

        The leader takes in `built` (its own finished build) and every unit's handover; a
        standby unit only follows the leader's catalogue. None when the config is blocked.
        """
        config = self.options.read()
        if config is None:
            return None
        clouds = self.images.clouds()
        with self.write_problems.noted():  # the old clouds.yaml is kept: no build may use it
            auths = {cloud_id: machine_files.CloudAuth.of(c) for cloud_id, c in clouds.items()}
            self.machine.write_clouds_yaml(machine_files.CloudAuth.of(config.build_cloud), auths)
        catalogue = self.catalogues.current()
        if self.unit.is_leader():
            with self.write_problems.noted():
                self.machine.write_cron(config.build_interval)
            catalogue = self.catalogues.lead(catalogue, config, clouds, built)
        else:
            self.machine.remove_cron()
            catalogue = self.catalogues.follow(catalogue, clouds, built)
        self.images.publish(catalogue, config.bases, config.arch)
        self.peers.share_published(self.images.published_ids())
        self.peers.share_building(self.launcher.builds_now().serving)
        return None if self.write_problems.errors else config

    def _start_build(
        self, config: BuildConfig, reason: str, lookups: Sequence[Lookup] = ()
    ) -> job_launcher.StartOutcome | None:
        """Start (or queue) a job for every requirer cloud; None when there is none."""
        clouds = self.images.clouds()
        if not clouds:
            no_credentials = charm_status.NO_CREDENTIALS.format(app=self.app.name)
            logger.info("no build for %s: %s", reason, no_credentials)
            return None
        # A build that finished while its callback is on its way: publish it first, so its
        # images are served, and protected from this build's pruning.
        if (waiting := self.launcher.take_result()) is not None and self._take_in(waiting) is None:
            return None  # a file cannot be written: collect-status says which
        protect = self.catalogues.protected_ids()
        fingerprint = self._fingerprint(config)
        request = job_plan.build_request(config, clouds, protect, fingerprint, lookups)
        if not config.verify_images:
            logger.warning(
                "verify-images is off: the images of this build are published unverified"
            )
        outcome = None
        with self.write_problems.noted():
            outcome = self.launcher.start(request)
        if outcome is not None and outcome.started:
            self.peers.save_fingerprint(request.fingerprint)
            self.peers.share_building(list(request.clouds))
            logger.info("build %s started (%s)", outcome.run_id, reason)
        elif outcome is not None:
            logger.info("build requested (%s) while %s runs: queued", reason, outcome.run_id)
        return outcome

    def _take_in(self, result: BuildResult) -> BuildConfig | None:
        """Publish (or hand over) a finished build's images."""
        charm_status.log_result(result)
        return self._reconcile(Catalogue.from_built(result.images, result.started_at))

    def _publish_finished(self) -> None:
        """Publish (or hand over) a finished build not yet handled; then start what is due."""
        result = self.launcher.take_result()
        config = self._reconcile() if result is None else self._take_in(result)
        if config is None:
            return
        builds = self.launcher.builds_now()
        if builds.running:
            return
        if not self.unit.is_leader():
            self.records.drop_queued()  # the leader's schedule serves it
        elif builds.queued:
            self._start_build(config, "queued rebuild")
        elif result is not None:
            # A cloud that joined while this job ran was not served by it: look it up now.
            served = set(builds.current.clouds) if builds.current else set()
            self._serve_new_clouds(config, [c for c in self.images.clouds() if c not in served])

    def _serve_new_clouds(self, config: BuildConfig, clouds: Sequence[str]) -> None:
        """Start a job for clouds lacking images (at most every SERVE_INTERVAL per cloud).

        The job looks them up, copies what is missing from the build cloud, and builds only
        when the build cloud has none.
        """
        catalogue = self.catalogues.current()
        now = datetime.datetime.now(datetime.timezone.utc)
        due = job_plan.due(clouds, dict(self._stored.served_at), now)
        lookups = job_plan.lookups(config, catalogue, due)
        if not lookups:
            return
        lacking = sorted({lookup.cloud for lookup in lookups})
        outcome = self._start_build(config, f"no image yet in {', '.join(lacking)}", lookups)
        if outcome is not None and outcome.started:
            self._stored.served_at = job_plan.served(dict(self._stored.served_at), lacking, now)

    def _migrate(self) -> None:
        """Carry an earlier charm's catalogue and published IDs over (upgrade, switch)."""
        self.catalogues.migrate(self.machine.read_clouds_yaml_auth())
        for path in self.machine.remove_canonical_files():
            logger.info("removed %s, left by Canonical's charm", path)
        # Earlier revisions stored an unkeyed fingerprint: the same settings keep their build.
        config = self.options.read()
        if config is not None and self.unit.is_leader():
            stored = self.peers.fingerprint() or self.records.stored_fingerprint()
            if stored and stored == config.legacy_fingerprint():
                keyed = self._fingerprint(config)
                self.records.remember_fingerprint(keyed)
                self.peers.save_fingerprint(keyed)

    def _status_facts(self) -> charm_status.StatusFacts:
        """Gather what collect-status needs; the builds only once the unit is past the gates."""
        config, clouds = self.options.read(), self.images.clouds()
        facts = charm_status.StatusFacts(
            config_problem=self.options.problem,
            write_problem=self.write_problems.first,
            integrated=bool(self.images.relations),
            clouds=len(clouds),
            leader=self.unit.is_leader(),
            leader_name=self.peers.leader(),
            verify_images=config.verify_images if config is not None else True,
        )
        if not facts.ready:
            return facts
        builds = self.launcher.builds_now()
        set_aside = tuple(self.records.set_aside_recently())
        served = len(self.catalogues.current().restrict(clouds).clouds())
        return dataclasses.replace(facts, builds=builds, set_aside=set_aside, served=served)


if __name__ == "__main__":  # pragma: no cover
    ops.main(GithubRunnerImageBuilderCharm)
