#!/usr/bin/env python3
"""Charm entry point: observes Juju events and turns them into intents.

Three intents: reconcile (clouds.yaml, cron, published relation data follow the state), start a
build (detached; never waited for), publish a finished build. The unit status is derived once
per hook from the state in `collect-status`.

Only the leader builds (schedule, action, new requirers) and keeps the catalogue, in the peer
relation; every unit publishes from it. A unit that finishes a build after it lost leadership
hands the images over through its peer data; the leader takes them in.
"""

import datetime
import logging
import os
from collections.abc import Sequence

import ops

import build_job
import builder
import cos
import image
import machine_files
import metrics_service
import migrate
import peers
import state
import state_files
import status_texts
from catalogue import Catalogue
from charms.github_runner_image_builder.v0.image import CloudCredentials, ProviderImages
from image_builder_contract import names, platforms

logger = logging.getLogger(__name__)

STANDBY = (
    "this unit is on standby: the leader {leader} builds; run the action there: "
    "juju run {leader} run"
)
# A cloud that lacks images gets one job (lookup, then a copy from the build cloud) at most this
# often, however often its relation changes: a requirer whose cloud refuses our copies cannot
# keep the builder busy. The schedule and the `run` action serve it regardless.
SERVE_INTERVAL = datetime.timedelta(minutes=15)
NO_CREDENTIALS = (
    "no image relation has given OpenStack credentials yet; "
    "integrate a runner charm first: juju integrate {app}:image github-runner:image"
)


class RunEvent(ops.EventBase):
    """Cron's `juju-exec ... JUJU_DISPATCH_PATH=hooks/run ./dispatch`: a scheduled build."""


class BuildFinishedEvent(ops.EventBase):
    """The build runner's juju-exec callback: a build has ended and left its result."""


class BuilderCharmEvents(ops.CharmEvents):
    """The charm's events plus the two dispatched from outside a Juju hook."""

    run = ops.EventSource(RunEvent)
    build_finished = ops.EventSource(BuildFinishedEvent)


def _auth(creds: CloudCredentials | state.BuildCloud) -> machine_files.CloudAuth:
    password = creds.password
    return machine_files.CloudAuth(
        auth_url=creds.auth_url,
        password=password if isinstance(password, str) else password.get_secret_value(),
        project_domain_name=creds.project_domain_name,
        project_name=creds.project_name,
        user_domain_name=creds.user_domain_name,
        username=creds.username,
    )


class GithubRunnerImageBuilderCharm(ops.CharmBase):
    """Keeps fresh GitHub runner images in OpenStack and publishes their IDs."""

    on = BuilderCharmEvents()
    _stored = ops.StoredState()  # type: ignore[no-untyped-call]  # ops leaves it untyped

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        # cloud id → when a job last started to serve it (ISO 8601): see SERVE_INTERVAL.
        self._stored.set_default(served_at={})
        self.proxy = state.ProxyConfig.from_env(os.environ)
        paths = builder.default_paths(self.charm_dir, self.unit.name)
        self.builder = builder.Builder(paths, self.unit.name, self.proxy.environment())
        self.machine = machine_files.MachineFiles(
            paths, self.unit.name, apt_install=machine_files.apt_install
        )
        self.images = image.ImageRelation(self)
        self.peers = peers.Peers(self)
        # Observes its own relation events and upgrade-charm: logs, Loki rules, dashboard.
        self.cos = cos.CosAgentProvider(self, self.builder.paths.log_dir)
        self._loaded: state.BuildConfig | state.ConfigValidationError | None = None
        # State files this hook could not write (disk full): the unit is Blocked saying so.
        self._write_problems: list[state_files.StateWriteError] = []

        observe = framework.observe
        observe(self.on.install, self._on_install)
        observe(self.on.upgrade_charm, self._on_upgrade_charm)
        observe(self.on.config_changed, self._on_config_changed)
        observe(self.on.secret_changed, self._on_config_changed)
        observe(self.on.leader_elected, self._on_leader_elected)
        observe(self.on.update_status, self._on_build_finished)
        observe(self.on.build_finished, self._on_build_finished)
        observe(self.on.run, self._on_run)
        observe(self.on.run_action, self._on_run_action)
        observe(self.on[image.RELATION_NAME].relation_joined, self._on_image_relation_changed)
        observe(self.on[image.RELATION_NAME].relation_changed, self._on_image_relation_changed)
        observe(self.on[image.RELATION_NAME].relation_departed, self._on_image_relation_gone)
        observe(self.on[image.RELATION_NAME].relation_broken, self._on_image_relation_gone)
        for event in (
            "relation_created",
            "relation_joined",
            "relation_changed",
            "relation_departed",
        ):
            observe(getattr(self.on[peers.PEER_RELATION], event), self._on_peers_changed)
        observe(self.on.collect_unit_status, self._on_collect_status)
        # Last, so its end-of-hook record sees what the handlers above did.
        self.metrics = metrics_service.MetricsService(
            self, self.builder, self.images.clouds, self._build_interval
        )

    # --- state -----------------------------------------------------------------------------

    def _read_secret(self, secret_id: str) -> dict[str, str]:
        # refresh=True: always build with the newest revision the operator published.
        return self.model.get_secret(id=secret_id).get_content(refresh=True)

    def _config(self) -> state.BuildConfig | None:
        """Return the validated config, None when an option is bad (collect-status says which)."""
        if self._loaded is None:
            try:
                self._loaded = state.load_config(
                    self.config, self._read_secret, self.proxy, self.app.name
                )
            except state.ConfigValidationError as errors:
                self._loaded = errors
                logger.warning("invalid configuration: %s", "; ".join(map(str, errors.errors)))
        return self._loaded if isinstance(self._loaded, state.BuildConfig) else None

    def _build_interval(self) -> int | None:
        config = self._config()
        return config.build_interval if config is not None else None

    def _catalogue(self) -> Catalogue:
        """Return the shared catalogue; this unit's copy before the leader shared one.

        With neither (this unit's copy lost or unreadable), what this unit publishes on each
        relation is taken back in.
        """
        shared = self.peers.catalogue()
        if shared is not None:
            return shared
        own = self.builder.load_catalogue()
        if own is not None:
            return own
        return migrate.adopt_published(Catalogue(), self.images.clouds(), self._published())

    def _published(self) -> list[tuple[CloudCredentials, ProviderImages]]:
        """Return what this unit publishes, per relation with credentials."""
        return [
            (creds, images)
            for relation in self.images.relations
            if (creds := self.images.cloud_of(relation)) is not None
            and (images := self.images.published_on(relation)) is not None
        ]

    def _save_catalogue(self, catalogue: Catalogue) -> None:
        """Share the catalogue (leader) and keep this unit's copy."""
        if self.unit.is_leader():
            self.peers.save_catalogue(catalogue)
        if catalogue != self.builder.load_catalogue():
            try:
                self.builder.save_catalogue(catalogue)
            except state_files.StateWriteError as error:
                self._write_problem(error)

    def _write_problem(self, error: state_files.StateWriteError) -> None:
        logger.error("%s", error)
        self._write_problems.append(error)

    def _fingerprint(self, config: state.BuildConfig) -> str:
        return config.fingerprint(self.peers.fingerprint_key())

    def _leader_name(self) -> str:
        return self.peers.leader() or "(not known yet)"

    # --- intents ---------------------------------------------------------------------------

    def _reconcile(self, built: Catalogue | None = None) -> state.BuildConfig | None:
        """Make clouds.yaml, cron, the catalogue and the relation data follow the state.

        The leader takes in `built` (its own finished build) and every unit's handover; a
        standby unit only follows the leader's catalogue. None when the config is blocked.
        """
        config = self._config()
        if config is None:
            return None
        clouds = self.images.clouds()
        try:
            self.machine.write_clouds_yaml(
                _auth(config.build_cloud), {cloud_id: _auth(c) for cloud_id, c in clouds.items()}
            )
        except state_files.StateWriteError as error:
            self._write_problem(error)  # the old clouds.yaml is kept: no build may use it
        catalogue = self._catalogue()
        if self.unit.is_leader():
            try:
                self.machine.write_cron(config.build_interval)
            except state_files.StateWriteError as error:
                self._write_problem(error)
            self.peers.claim_leadership()
            for taken in [built or Catalogue(), *self.peers.handovers()]:
                catalogue = catalogue.merge(taken.images)
            catalogue = catalogue.settle(config.bases, config.arch).restrict(clouds)
            self._save_catalogue(catalogue)
            self.peers.clear_handover()  # its own, from before it was leader again: taken in
        else:
            self.machine.remove_cron()
            self._save_catalogue(catalogue)
            handover = self.peers.handover()
            if built is not None and built.images:
                self.peers.hand_over(built)
                logger.info("images handed over to the leader %s", self._leader_name())
            elif handover is not None and catalogue.covers(
                i for i in handover.images if i.cloud in clouds
            ):
                self.peers.clear_handover()
            catalogue = catalogue.restrict(clouds)
        self.images.publish(catalogue, config.bases, config.arch)
        self.peers.share_published(self.images.published_ids())
        build = self.builder.state()
        running = build.current.clouds if build.running and build.current else []
        self.peers.share_building(running)
        return None if self._write_problems else config

    def _start_build(
        self, config: state.BuildConfig, reason: str, lookups: Sequence[build_job.Lookup] = ()
    ) -> build_job.StartOutcome | None:
        """Start (or queue) a build for every requirer cloud; None when there is none."""
        clouds = self.images.clouds()
        if not clouds:
            logger.info("no build for %s: %s", reason, NO_CREDENTIALS.format(app=self.app.name))
            return None
        # A build that finished while its callback is on its way: publish it first, so its
        # images are served, and protected from this build's pruning.
        if (waiting := self.builder.take_result()) is not None and self._take_in(waiting) is None:
            return None  # a state file cannot be written: collect-status says which
        # Nothing any unit publishes or hands over may be pruned, nor anything catalogued.
        protect = (
            self._catalogue().ids() | self.images.published_ids() | self.peers.protected_ids()
        )
        request = build_job.BuildRequest(
            options=build_job.BuildOptions(
                bases=tuple(config.base_words()),
                arch=config.arch,
                prefix=config.prefix,
                upload_clouds=tuple(sorted(clouds)),
                keep_revisions=config.revision_history_limit,
                flavor=config.flavor,
                network=config.network,
                runner_version=config.runner_version,
                script_url=config.script_url,
                runner_binary_repo=config.runner_binary_repo,
                protect=tuple(sorted(protect)),
                verify_script_url=config.verify_script_url,
                verify=config.verify_images,
            ),
            script_secrets=dict(config.script_secrets),
            proxy=config.image_proxy,
            fingerprint=self._fingerprint(config),
            lookups=tuple(lookups),
        )
        if not config.verify_images:
            logger.warning(
                "verify-images is off: the images of this build are published unverified"
            )
        try:
            outcome = self.builder.start(request)
        except state_files.StateWriteError as error:
            self._write_problem(error)
            return None
        if outcome.started:
            self.peers.save_fingerprint(request.fingerprint)
            self.peers.share_building(list(request.clouds))
            logger.info("build %s started (%s)", outcome.run_id, reason)
        else:
            logger.info("build requested (%s) while %s runs: queued", reason, outcome.run_id)
        return outcome

    def _take_in(self, result: build_job.BuildResult) -> state.BuildConfig | None:
        """Publish (or hand over) a finished build's images."""
        status_texts.log_result(result)
        return self._reconcile(Catalogue.from_built(result.images, result.started_at))

    def _publish_finished(self) -> None:
        """Publish (or hand over) a finished build not yet handled; then start what is due."""
        result = self.builder.take_result()
        config = self._reconcile() if result is None else self._take_in(result)
        if config is None:
            return
        build = self.builder.state()
        if build.running:
            return
        if not self.unit.is_leader():
            self.builder.drop_queued()  # the leader's schedule serves it
            return
        if build.queued:
            self._start_build(config, "queued rebuild")
        elif result is not None:
            # A cloud that joined while this job ran was not served by it: look it up now.
            served = set(build.current.clouds) if build.current else set()
            self._serve_new_clouds(config, [c for c in self.images.clouds() if c not in served])

    def _due(self, clouds: Sequence[str], now: datetime.datetime) -> list[str]:
        """Return the clouds whose last serving job started SERVE_INTERVAL ago or longer."""
        due = []
        for cloud in clouds:
            last = self._stored.served_at.get(cloud)
            if last is None or now - datetime.datetime.fromisoformat(last) >= SERVE_INTERVAL:
                due.append(cloud)
            else:
                logger.info(
                    "cloud %s was served at %s; not again before %s", cloud, last, SERVE_INTERVAL
                )
        return due

    def _serve_new_clouds(self, config: state.BuildConfig, clouds: Sequence[str]) -> None:
        """Start a job for clouds lacking images (at most every SERVE_INTERVAL per cloud).

        The job looks them up, copies what is missing from the build cloud, and builds only
        when the build cloud has none.
        """
        catalogue = self._catalogue()
        now = datetime.datetime.now(datetime.timezone.utc)
        clouds = self._due(clouds, now)
        lookups = [
            build_job.Lookup(
                cloud=cloud,
                base=base,
                arch=config.arch,
                name=names.image_name(
                    config.prefix, platforms.parse_base(base), platforms.parse_arch(config.arch)
                ),
            )
            for cloud in clouds
            for base in catalogue.missing(cloud, config.bases, config.arch)
        ]
        if lookups:
            lacking = sorted({lookup.cloud for lookup in lookups})
            outcome = self._start_build(config, f"no image yet in {', '.join(lacking)}", lookups)
            if outcome is not None and outcome.started:
                served_at = dict(self._stored.served_at)
                served_at.update({cloud: now.isoformat() for cloud in lacking})
                self._stored.served_at = served_at

    def _migrate(self) -> None:
        """Carry an earlier charm's catalogue and published IDs over (upgrade, switch)."""
        clouds = self.images.clouds()
        catalogue = migrate.rename_legacy_clouds(
            self._catalogue(), clouds, self.machine.read_clouds_yaml_auth()
        )
        catalogue = migrate.adopt_published(catalogue, clouds, self._published())
        self._save_catalogue(catalogue)
        for path in self.machine.remove_canonical_files():
            logger.info("removed %s, left by Canonical's charm", path)
        # Earlier revisions stored an unkeyed fingerprint: the same settings keep their build.
        config = self._config()
        if config is not None and self.unit.is_leader():
            stored = self.peers.fingerprint() or self.builder.stored_fingerprint()
            if stored and stored == config.legacy_fingerprint():
                keyed = self._fingerprint(config)
                self.builder.remember_fingerprint(keyed)
                self.peers.save_fingerprint(keyed)

    # --- event handlers --------------------------------------------------------------------

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
        config = self._config()
        if config is not None and self.unit.is_leader() and not self.builder.is_running():
            self._serve_new_clouds(config, list(self.images.clouds()))

    def _on_config_changed(self, _: ops.EventBase | None) -> None:
        config = self._reconcile()
        if config is None or not self.images.clouds() or not self.unit.is_leader():
            return
        built_with = self.peers.fingerprint() or self.builder.stored_fingerprint()
        if self._fingerprint(config) != built_with:
            self._start_build(config, "the image settings changed")

    def _on_leader_elected(self, _: ops.EventBase) -> None:
        # The new leader takes over the schedule (in reconcile) and any cloud still unserved,
        # but not one the old leader's running job serves: its result comes as a handover.
        config = self._reconcile()
        if config is not None and self.unit.is_leader() and not self.builder.is_running():
            elsewhere = self.peers.built_elsewhere()
            self._serve_new_clouds(config, [c for c in self.images.clouds() if c not in elsewhere])

    def _on_peers_changed(self, _: ops.EventBase) -> None:
        # A standby unit follows the leader's catalogue; the leader takes in handovers.
        self._reconcile()

    def _on_build_finished(self, _: ops.EventBase) -> None:
        self._publish_finished()

    def _on_run(self, _: RunEvent) -> None:
        config = self._reconcile()
        if config is not None and self.unit.is_leader():
            self._start_build(config, "schedule")

    def _on_run_action(self, event: ops.ActionEvent) -> None:
        config = self._reconcile()
        if not self.unit.is_leader():
            event.fail(STANDBY.format(leader=self._leader_name()))
            return
        if self._write_problems:
            event.fail(str(self._write_problems[0]))
            return
        if config is None:
            assert isinstance(self._loaded, state.ConfigValidationError)  # noqa: S101 - set by _config
            event.fail(f"cannot build until the configuration is fixed: {self._loaded}")
            return
        outcome = self._start_build(config, "run action")
        if outcome is None and self._write_problems:
            event.fail(str(self._write_problems[0]))
        elif outcome is None:
            event.fail(NO_CREDENTIALS.format(app=self.app.name))
        elif outcome.started:
            event.set_results({"result": "started", "build-id": outcome.run_id})
        else:
            event.set_results(
                {
                    "result": "queued",
                    "build-id": outcome.run_id,
                    "detail": "a build is running; one rebuild will start when it ends",
                }
            )

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
            return
        if self.builder.is_running():
            # Not queued: the running job's end handler serves clouds it did not include.
            logger.info(
                "relation %s: cloud %s served after the running build",
                event.relation.id,
                creds.cloud_id,
            )
            return
        # Images built earlier for this cloud (e.g. before a redeploy) may exist: the detached
        # job looks them up first (the CLI's start alone exceeds a hook's time budget) and
        # builds only when one is missing.
        self._serve_new_clouds(config, [creds.cloud_id])

    def _on_image_relation_gone(self, _: ops.RelationEvent) -> None:
        # The relation's requirer (or its last unit) left: clouds.yaml and the data follow.
        self._reconcile()

    def _on_collect_status(self, event: ops.CollectStatusEvent) -> None:
        config = self._config()
        if config is None:
            event.add_status(ops.BlockedStatus(str(self._loaded)))
            return
        if self._write_problems:
            event.add_status(ops.BlockedStatus(str(self._write_problems[0])))
            return
        if not self.images.relations:
            event.add_status(ops.BlockedStatus("image integration required"))
            return
        clouds = self.images.clouds()
        if not clouds:
            event.add_status(
                ops.WaitingStatus("waiting for OpenStack credentials from a requirer")
            )
            return
        build = self.builder.state()
        leader = self.unit.is_leader()
        note = status_texts.set_aside_note(self.builder.set_aside_recently())
        if build.running and build.current is not None:
            queued = ", rebuild queued" if build.queued and leader else ""
            started = build.current.started_at.strftime("%H:%M")
            handing = "" if leader else "; its images go to the leader"
            event.add_status(
                ops.MaintenanceStatus(
                    f"Building images since {started} UTC{queued}{handing}" + note
                )
            )
        elif not leader:
            served = len(self._catalogue().restrict(clouds).clouds())
            event.add_status(
                ops.ActiveStatus(
                    f"Standby: serving the images of the leader {self._leader_name()} "
                    f"({served} of {len(clouds)} clouds)" + note
                )
            )
        elif build.last_result is not None:
            event.add_status(
                ops.ActiveStatus(
                    status_texts.summary(build.last_result)
                    + status_texts.unverified(config)
                    + note
                )
            )
        else:
            served = len(self._catalogue().restrict(clouds).clouds())
            event.add_status(
                ops.ActiveStatus(
                    f"No build has run on this unit yet; {served} of {len(clouds)} clouds served"
                    + status_texts.unverified(config)
                    + note
                )
            )


if __name__ == "__main__":  # pragma: no cover
    ops.main(GithubRunnerImageBuilderCharm)
