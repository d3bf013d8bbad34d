"""The peer relation: what the units of this application share.

Application data (the leader writes it): the catalogue every unit publishes, the leader's unit
name (so that a standby unit can name it) and the fingerprint of the settings of the last build.
Unit data (each unit its own): the image IDs it publishes right now, the clouds its running
job serves (so a new leader does not start the same job again), and a handover — the images of
a build it finished after it lost leadership, for the leader to take in. The leader
protects all of them from pruning.

The fingerprint is an HMAC (config.BuildConfig.fingerprint) under a key kept in a Juju secret
owned by the application: every unit, the next leader included, computes the same digest, and
neither a copy of a unit's state folder nor the peer data lets anyone check a guess of a script
secret against it.
"""

import json
import logging
import secrets

import ops
import pydantic

from catalogue import Catalogue
from charms.github_runner_image_builder.v0.image import load_json

logger = logging.getLogger(__name__)

PEER_RELATION = "peers"
CATALOGUE = "catalogue"
LEADER = "leader"
FINGERPRINT = "fingerprint"
PUBLISHED = "published"
HANDOVER = "handover"
BUILDING = "building"
FINGERPRINT_KEY = "fingerprint-key"  # label of the application's secret holding the HMAC key


class Peers:
    """Reads and writes the peer relation; a missing relation (very first hooks) reads empty."""

    def __init__(self, charm: ops.CharmBase) -> None:
        self._charm = charm

    @property
    def relation(self) -> ops.Relation | None:
        """Return the peer relation, None until Juju has created it."""
        return self._charm.model.get_relation(PEER_RELATION)

    def _app(self) -> ops.RelationDataContent | None:
        relation = self.relation
        return relation.data[self._charm.app] if relation is not None else None

    def _unit(self) -> ops.RelationDataContent | None:
        relation = self.relation
        return relation.data[self._charm.unit] if relation is not None else None

    def _units(self) -> list[ops.RelationDataContent]:
        """Return every unit's data, this unit's too."""
        relation = self.relation
        if relation is None:
            return []
        return [relation.data[self._charm.unit], *(relation.data[u] for u in relation.units)]

    # --- application data (written by the leader only) ----------------------------------------

    def catalogue(self) -> Catalogue | None:
        """Return the shared catalogue; None before the leader wrote one."""
        data = self._app()
        text = data.get(CATALOGUE, "") if data is not None else ""
        if not text:
            return None
        try:
            return Catalogue.from_json(text)
        except ValueError as exc:
            logger.warning("ignoring an unreadable catalogue in the peer relation: %s", exc)
            return None

    def _write_app(self, key: str, value: str) -> None:
        data = self._app()
        if data is not None and data.get(key) != value:
            data[key] = value

    def save_catalogue(self, catalogue: Catalogue) -> None:
        """Share the catalogue (leader only)."""
        self._write_app(CATALOGUE, catalogue.to_json())

    def leader(self) -> str:
        """Return the unit the leader says it is ('' before one said so)."""
        data = self._app()
        return data.get(LEADER, "") if data is not None else ""

    def claim_leadership(self) -> None:
        """Write this unit's name as the leader's (leader only)."""
        self._write_app(LEADER, self._charm.unit.name)

    def fingerprint(self) -> str:
        """Return the settings digest of the application's last started build."""
        data = self._app()
        return data.get(FINGERPRINT, "") if data is not None else ""

    def fingerprint_key(self) -> bytes:
        """Return the application's fingerprint key; the leader creates it the first time.

        Its secret's ID (not secret) is shared here too, so that a unit that becomes leader
        finds it by ID as well as by label.
        """
        model = self._charm.model
        data = self._app()
        secret_id = data.get(FINGERPRINT_KEY, "") if data is not None else ""
        try:
            secret = model.get_secret(id=secret_id or None, label=FINGERPRINT_KEY)
            return secret.get_content(refresh=True)["key"].encode()
        except ops.SecretNotFoundError:
            pass
        if not self._charm.unit.is_leader():
            raise RuntimeError("only the leader computes fingerprints")  # callers check it
        secret = self._charm.app.add_secret(
            {"key": secrets.token_hex(32)},
            label=FINGERPRINT_KEY,
            description="HMAC key of the image settings' fingerprint",
        )
        if secret.id is not None:
            self._write_app(FINGERPRINT_KEY, secret.id)
        return secret.get_content()["key"].encode()

    def save_fingerprint(self, fingerprint: str) -> None:
        """Record the settings digest of a build the leader started."""
        self._write_app(FINGERPRINT, fingerprint)

    # --- unit data ----------------------------------------------------------------------------

    def share_published(self, ids: set[str]) -> None:
        """Tell the leader which image IDs this unit publishes now."""
        data = self._unit()
        value = json.dumps(sorted(ids))
        if data is not None and data.get(PUBLISHED) != value:
            data[PUBLISHED] = value

    def share_building(self, clouds: list[str]) -> None:
        """Tell the other units which clouds this unit's running job serves ([]: none)."""
        data = self._unit()
        if data is None:
            return
        if clouds:
            data[BUILDING] = json.dumps(sorted(clouds))
        else:
            data.pop(BUILDING, None)

    def built_elsewhere(self) -> set[str]:
        """Return the clouds that another unit's running job serves."""
        relation = self.relation
        clouds: set[str] = set()
        if relation is None:
            return clouds
        for unit in relation.units:
            try:
                clouds.update(str(c) for c in load_json(relation.data[unit].get(BUILDING, "[]")))
            except (ValueError, TypeError):
                logger.warning("ignoring an unreadable list of clouds in %s's peer data", unit)
        return clouds

    def handover(self) -> Catalogue | None:
        """Return this unit's handover, if any."""
        data = self._unit()
        return _handover_of(data) if data is not None else None

    def hand_over(self, images: Catalogue) -> None:
        """Leave a build's images for the leader (merged with an earlier handover)."""
        data = self._unit()
        if data is None:
            logger.error("no peer relation: the images of this build cannot reach the leader")
            return
        earlier = _handover_of(data) or Catalogue()
        data[HANDOVER] = earlier.merge(images.images).to_json()

    def clear_handover(self) -> None:
        """Drop this unit's handover once the leader's catalogue covers it."""
        data = self._unit()
        if data is not None:
            data.pop(HANDOVER, None)

    def handovers(self) -> list[Catalogue]:
        """Return every unit's handover."""
        return [h for data in self._units() if (h := _handover_of(data)) is not None]

    def protected_ids(self) -> set[str]:
        """Return every ID a unit publishes or hands over: a build must never prune them."""
        ids: set[str] = set()
        for data in self._units():
            try:
                ids.update(str(i) for i in load_json(data.get(PUBLISHED, "[]"), 1024 * 1024))
            except (ValueError, TypeError):
                logger.warning("ignoring an unreadable list of published IDs in peer data")
            if (handover := _handover_of(data)) is not None:
                ids |= handover.ids()
        return ids


def _handover_of(data: ops.RelationDataContent) -> Catalogue | None:
    text = data.get(HANDOVER, "")
    if not text:
        return None
    try:
        return Catalogue.from_json(text)
    except (ValueError, pydantic.ValidationError):
        logger.warning("ignoring an unreadable handover in peer data")
        return None
