#!/usr/bin/env python3
"""Charm entry point: observes Juju events and turns them into intents.

Three intents: reconcile (clouds.yaml, cron, published relation data follow the state), start a
build (detached; never waited for), publish a finished build. The unit status is derived once
per hook from the state in `collect-status`.
"""

import logging
import os
from collections.abc import Sequence

import ops

import build_job
import builder
import cos
import image
import state
from charms.github_runner_image_builder.v0.image import CloudCredentials

logger = logging.getLogger(__name__)

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


def _auth(creds: CloudCredentials | state.BuildCloud) -> builder.CloudAuth:
    password = creds.password
    return builder.CloudAuth(
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

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.builder = builder.Builder(
            builder.default_paths(self.charm_dir, self.unit.name),
            self.unit.name,
            os.environ,
            apt_install=builder.apt_install,
        )
        self.images = image.ImageRelation(self)
        # Observes its own relation events and upgrade-charm: logs, Loki rules, dashboard.
        self.cos = cos.CosAgentProvider(self, self.builder.paths.log_dir)
        self._loaded: state.BuildConfig | state.ConfigValidationError | None = None

        observe = framework.observe
        observe(self.on.install, self._on_install)
        observe(self.on.upgrade_charm, self._on_install)
        observe(self.on.config_changed, self._on_config_changed)
        observe(self.on.secret_changed, self._on_config_changed)
        observe(self.on.update_status, self._on_build_finished)
        observe(self.on.build_finished, self._on_build_finished)
        observe(self.on.run, self._on_run)
        observe(self.on.run_action, self._on_run_action)
        observe(self.on[image.RELATION_NAME].relation_joined, self._on_image_relation_changed)
        observe(self.on[image.RELATION_NAME].relation_changed, self._on_image_relation_changed)
        observe(self.on[image.RELATION_NAME].relation_departed, self._on_image_relation_gone)
        observe(self.on[image.RELATION_NAME].relation_broken, self._on_image_relation_gone)
        observe(self.on.collect_unit_status, self._on_collect_status)

    # --- state -----------------------------------------------------------------------------

    def _read_secret(self, secret_id: str) -> dict[str, str]:
        # refresh=True: always build with the newest revision the operator published.
        return self.model.get_secret(id=secret_id).get_content(refresh=True)

    def _config(self) -> state.BuildConfig | None:
        """Return the validated config, None when an option is bad (collect-status says which)."""
        if self._loaded is None:
            try:
                self._loaded = state.load_config(self.config, self._read_secret)
            except state.ConfigValidationError as errors:
                self._loaded = errors
                logger.warning("invalid configuration: %s", "; ".join(map(str, errors.errors)))
        return self._loaded if isinstance(self._loaded, state.BuildConfig) else None

    # --- intents ---------------------------------------------------------------------------

    def _reconcile(self) -> state.BuildConfig | None:
        """Make clouds.yaml, cron and the relation data follow the state; None when blocked."""
        config = self._config()
        if config is None:
            return None
        clouds = self.images.clouds()
        self.builder.write_clouds_yaml(
            _auth(config.build_cloud), {cloud_id: _auth(c) for cloud_id, c in clouds.items()}
        )
        self.builder.write_cron(config.build_interval)
        catalogue = self.builder.load_catalogue()
        kept = {cloud: ids for cloud, ids in catalogue.items() if cloud in clouds}
        if kept != catalogue:
            self.builder.save_catalogue(kept)
        self.images.publish(kept, config.bases, config.arch)
        return config

    def _start_build(
        self, config: state.BuildConfig, reason: str, lookups: Sequence[build_job.Lookup] = ()
    ) -> build_job.StartOutcome | None:
        """Start (or queue) a build for every requirer cloud; None when there is none."""
        clouds = self.images.clouds()
        if not clouds:
            logger.info("no build for %s: %s", reason, NO_CREDENTIALS.format(app=self.app.name))
            return None
        catalogue = self.builder.load_catalogue()
        protect = self.images.published_ids()
        protect.update(i for ids in catalogue.values() for i in ids.values())
        request = build_job.build_request(
            build_job.BuildCommandInput(
                bases=config.base_words(),
                arch=config.arch,
                prefix=self.app.name,
                upload_clouds=sorted(clouds),
                keep_revisions=config.revision_history_limit,
                flavor=config.flavor,
                network=config.network,
                runner_version=config.runner_version,
                script_url=config.script_url,
                proxy=os.environ.get("JUJU_CHARM_HTTP_PROXY")
                or os.environ.get("JUJU_CHARM_HTTPS_PROXY", ""),
                protect=sorted(protect),
                script_secrets={k: v.get_secret_value() for k, v in config.script_secrets.items()},
                fingerprint=config.fingerprint(),
                lookups=lookups,
                runner_binary_repo=config.runner_binary_repo,
                verify_script_url=config.verify_script_url,
                verify=config.verify_images,
            )
        )
        if not config.verify_images:
            logger.warning(
                "verify-images is off: the images of this build are published unverified"
            )
        outcome = self.builder.start(request)
        if outcome.started:
            logger.info("build %s started (%s)", outcome.run_id, reason)
        else:
            logger.info("build requested (%s) while %s runs: queued", reason, outcome.run_id)
        return outcome

    def _publish_finished(self, config: state.BuildConfig) -> None:
        """Publish a finished build not yet handled, then start a queued rebuild."""
        result = self.builder.take_result()
        if result is not None:
            merged = image.merge(self.builder.load_catalogue(), result.images)
            catalogue = image.settle(merged, config.bases, config.arch)
            self.builder.save_catalogue(catalogue)
            self.images.publish(catalogue, config.bases, config.arch)
            logger.info(
                "build %s finished: exit %s, %d images, %d failed",
                result.run_id,
                result.exit_code,
                len(result.images),
                len(result.failures),
            )
            for failure in result.failures:
                logger.error(
                    "build failed: %s/%s cloud %s step %s: %s",
                    failure.base,
                    failure.arch,
                    failure.cloud,
                    failure.step,
                    failure.error,
                )
            if result.error:
                logger.error("build %s failed: %s", result.run_id, result.error)
        build = self.builder.state()
        if build.running:
            return
        if build.queued:
            self._start_build(config, "queued rebuild")
        elif result is not None:
            # A cloud that joined while this job ran was not served by it: look it up now.
            served = set(build.current.clouds) if build.current else set()
            self._serve_new_clouds(config, [c for c in self.images.clouds() if c not in served])

    def _serve_new_clouds(self, config: state.BuildConfig, clouds: Sequence[str]) -> None:
        """Start a job for clouds lacking images: it looks them up, and builds only if needed."""
        catalogue = self.builder.load_catalogue()
        lookups = [
            build_job.Lookup(
                cloud=cloud,
                base=base,
                arch=config.arch,
                name=image.image_name(self.app.name, base, config.arch),
            )
            for cloud in clouds
            for base in image.missing(catalogue, cloud, config.bases, config.arch)
        ]
        if lookups:
            lacking = sorted({lookup.cloud for lookup in lookups})
            self._start_build(config, f"no image yet in {', '.join(lacking)}", lookups)

    # --- event handlers --------------------------------------------------------------------

    def _on_install(self, _: ops.EventBase) -> None:
        self.unit.status = ops.MaintenanceStatus("installing the image builder")
        self.builder.install()
        self._on_config_changed(None)

    def _on_config_changed(self, _: ops.EventBase | None) -> None:
        config = self._reconcile()
        if config is None or not self.images.clouds():
            return
        if config.fingerprint() != self.builder.stored_fingerprint():
            self._start_build(config, "the image settings changed")

    def _on_build_finished(self, _: ops.EventBase) -> None:
        config = self._reconcile()
        if config is not None:
            self._publish_finished(config)

    def _on_run(self, _: RunEvent) -> None:
        config = self._reconcile()
        if config is not None:
            self._start_build(config, "schedule")

    def _on_run_action(self, event: ops.ActionEvent) -> None:
        config = self._reconcile()
        if config is None:
            assert isinstance(self._loaded, state.ConfigValidationError)  # noqa: S101 - set by _config
            event.fail(f"cannot build until the configuration is fixed: {self._loaded}")
            return
        outcome = self._start_build(config, "run action")
        if outcome is None:
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
        if config is None:
            return
        creds = self.images.cloud_of(event.relation)
        if creds is None:
            logger.info("relation %s: waiting for all six credential keys", event.relation.id)
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
        if not self.images.relations:
            event.add_status(ops.BlockedStatus("image integration required"))
            return
        if not self.images.clouds():
            event.add_status(
                ops.WaitingStatus("waiting for OpenStack credentials from a requirer")
            )
            return
        build = self.builder.state()
        if build.running and build.current is not None:
            queued = ", rebuild queued" if build.queued else ""
            started = build.current.started_at.strftime("%H:%M")
            event.add_status(ops.MaintenanceStatus(f"Building images since {started} UTC{queued}"))
        elif build.last_result is not None:
            event.add_status(ops.ActiveStatus(summary(build.last_result) + unverified(config)))
        else:
            event.add_status(
                ops.ActiveStatus("No build has run on this unit yet" + unverified(config))
            )


def unverified(config: state.BuildConfig) -> str:
    """Return the status suffix that says images go out unverified, when they do."""
    return "" if config.verify_images else " (images unverified: verify-images is off)"


def summary(result: build_job.BuildResult) -> str:
    """Return the one-line status of a finished build."""
    when = result.finished_at.strftime("%H:%M")
    if result.kind == "lookup":
        found = len(result.images)
        return (
            f"Found {found} existing image{'' if found == 1 else 's'} {when} UTC; no build needed"
        )
    if result.error:
        return f"Last build {when} UTC failed: {result.error}"
    images = len(result.images)
    failed_verify = [f for f in result.failures if f.step == "verify"]
    if failed_verify:
        # The operator's first question: which image failed which check.
        first = failed_verify[0]
        text = (
            f"Last build {when} UTC: {first.base}/{first.arch} failed verify: {first.error[:100]}"
        )
        others = len(result.failures) - 1
        return text + (f" ({images} built, {others} more failed)" if images or others else "")
    text = f"Last build {when} UTC: {images} image{'' if images == 1 else 's'}, "
    text += f"{len(result.failures)} failed"
    if result.failures:
        first = result.failures[0]
        where = f" in {first.cloud}" if first.cloud else ""
        text += f" ({first.base}/{first.arch}{where} at {first.step or 'unknown step'}"
        text += f": {first.error[:80]})" if first.error else ")"
    return text


if __name__ == "__main__":  # pragma: no cover
    ops.main(GithubRunnerImageBuilderCharm)
