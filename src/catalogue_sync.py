"""The catalogue across the units: where it is kept, and how the leader and a standby keep it.

Kept: the leader's in the peer relation's application data, each unit's copy on its disk
(src/job_records.py); with neither (this unit's copy lost or unreadable), what this unit
publishes on each relation is taken back in. The leader takes in its own builds and every
unit's handover; a standby follows the leader's catalogue and hands its own build over until
the leader's catalogue covers it.
"""

import logging
from collections.abc import Callable, Mapping

import migrate
from catalogue import Catalogue
from charm_status import UNKNOWN_LEADER
from charms.github_runner_image_builder.v0.image import CloudCredentials, ProviderImages
from config import BuildConfig
from durable_files import WriteProblems
from job_records import JobRecords
from relation_image import ImageRelation
from relation_peers import Peers

logger = logging.getLogger(__name__)

Clouds = Mapping[str, CloudCredentials]  # the requirer clouds by id


class CatalogueSync:
    """Reads and keeps the catalogue for this unit, as the leader or as a standby."""

    def __init__(
        self,
        peers: Peers,
        records: JobRecords,
        images: ImageRelation,
        is_leader: Callable[[], bool],
        problems: WriteProblems,
    ) -> None:
        self._peers = peers
        self._records = records
        self._images = images
        self._is_leader = is_leader
        self._problems = problems  # this unit's copy could not be written: the unit blocks

    def current(self) -> Catalogue:
        """Return the shared catalogue; this unit's copy before the leader shared one."""
        shared = self._peers.catalogue()
        if shared is not None:
            return shared
        own = self._records.load_catalogue()
        if own is not None:
            return own
        return migrate.adopt_published(Catalogue(), self._images.clouds(), self.published())

    def published(self) -> list[tuple[CloudCredentials, ProviderImages]]:
        """Return what this unit publishes, per relation with credentials."""
        return [
            (creds, images)
            for relation in self._images.relations
            if (creds := self._images.cloud_of(relation)) is not None
            and (images := self._images.published_on(relation)) is not None
        ]

    def save(self, catalogue: Catalogue) -> None:
        """Share the catalogue (leader) and keep this unit's copy."""
        if self._is_leader():
            self._peers.save_catalogue(catalogue)
        if catalogue != self._records.load_catalogue():
            with self._problems.noted():
                self._records.save_catalogue(catalogue)

    def protected_ids(self) -> set[str]:
        """Return every ID catalogued, published or handed over by any unit: none is pruned."""
        return self.current().ids() | self._images.published_ids() | self._peers.protected_ids()

    def lead(
        self, catalogue: Catalogue, config: BuildConfig, clouds: Clouds, built: Catalogue | None
    ) -> Catalogue:
        """Return (and keep) the leader's catalogue with `built` and every handover taken in."""
        self._peers.claim_leadership()
        taken = [built or Catalogue(), *self._peers.handovers()]
        catalogue = catalogue.take_in(taken, config.bases, config.arch, clouds)
        self.save(catalogue)
        self._peers.clear_handover()  # its own, from before it was leader again: taken in
        return catalogue

    def follow(self, catalogue: Catalogue, clouds: Clouds, built: Catalogue | None) -> Catalogue:
        """Return (and keep) the leader's catalogue; hand `built` over until the leader has it."""
        self.save(catalogue)
        handover = self._peers.handover()
        if built is not None and built.images:
            self._peers.hand_over(built)
            leader = self._peers.leader() or UNKNOWN_LEADER
            logger.info("images handed over to the leader %s", leader)
        elif handover is not None and catalogue.covers_handover(handover, clouds):
            self._peers.clear_handover()
        return catalogue.restrict(clouds)

    def migrate(self, legacy_auth: Mapping[str, Mapping[str, object]]) -> None:
        """Carry an earlier charm's catalogue and published IDs over (upgrade, switch).

        `legacy_auth`: the clouds.yaml entries the earlier charm left, by name.
        """
        clouds = self._images.clouds()
        catalogue = migrate.rename_legacy_clouds(self.current(), clouds, legacy_auth)
        self.save(migrate.adopt_published(catalogue, clouds, self.published()))
