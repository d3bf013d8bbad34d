"""Scenario tests of the github_runner_image_v0 charm library, with small charms of each side."""

import logging
from collections.abc import Mapping
from typing import Any

import ops
import pytest
from ops import testing

from charms.github_runner_image_builder.v0.image import (
    CloudCredentials,
    ImageChangedEvent,
    ImageProvider,
    ImageRef,
    ImageRequirer,
    InvalidDataError,
    ProviderImages,
    PublishedImage,
)

PASSWORD = "s3cr3t-Pa55w0rd"  # noqa: S105 — a test value, searched for in the logs
CREDS = {
    "auth_url": "https://keystone.example:5000/v3",
    "password": PASSWORD,
    "project_domain_name": "Default",
    "project_name": "runners",
    "user_domain_name": "Default",
    "username": "builder",
}
OTHER_CREDS = {**CREDS, "project_name": "garm", "username": "garm-user", "password": "other-pw"}
IMAGES = [
    PublishedImage(id="img-noble-x64", arch="x64", base="noble"),
    PublishedImage(id="img-jammy-x64", arch="x64", base="jammy"),
    PublishedImage(id="img-noble-arm64", arch="arm64", base="noble"),
]

PROVIDER_META = {
    "name": "provider",
    "provides": {"image": {"interface": "github_runner_image_v0"}},
}
REQUIRER_META = {
    "name": "requirer",
    "requires": {"image": {"interface": "github_runner_image_v0"}},
}


class ProviderCharm(ops.CharmBase):
    """Publishes IMAGES on every relation whose requirer gave credentials, as a status report."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.image = ImageProvider(self)
        framework.observe(self.on.image_relation_changed, self._on_changed)

    def _on_changed(self, event: ops.RelationChangedEvent) -> None:
        if self.image.credentials(event.relation) is None:
            self.image.clear(event.relation)
        else:
            self.image.publish(event.relation, IMAGES)
        clouds = ",".join(sorted(self.image.requirer_clouds()))
        self.unit.status = ops.ActiveStatus(f"clouds: {clouds}")


class RequirerCharm(ops.CharmBase):
    """Records every image_changed event it sees."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.image = ImageRequirer(self)
        self.seen: list[ProviderImages] = []
        framework.observe(self.image.on.image_changed, self._on_image_changed)

    def _on_image_changed(self, event: ImageChangedEvent) -> None:
        self.seen.append(event.image)


def live(charm: ops.CharmBase, relation: testing.Relation) -> ops.Relation:
    """The ops.Relation the charm sees for a Scenario relation."""
    found = charm.model.get_relation("image", relation.id)
    assert found is not None
    return found


def provider_run(*relations: testing.Relation) -> tuple[testing.State, ProviderCharm]:
    ctx = testing.Context(ProviderCharm, meta=PROVIDER_META)
    state_in = testing.State(relations=relations)
    remote_unit = min(relations[0].remote_units_data)
    with ctx(ctx.on.relation_changed(relations[0], remote_unit=remote_unit), state_in) as mgr:
        state = mgr.run()
        return state, mgr.charm


def provider_credentials(*units: dict[str, str]) -> CloudCredentials | None:
    relation = testing.Relation("image", remote_units_data=dict(enumerate(units)))
    _, charm = provider_run(relation)
    return charm.image.credentials(live(charm, relation))


def unit_data(state: testing.State, relation: testing.Relation) -> Mapping[str, str]:
    data: Mapping[str, str] = state.get_relation(relation.id).local_unit_data
    return data


def image_keys(state: testing.State, relation: testing.Relation) -> dict[str, str]:
    data = unit_data(state, relation)
    return {key: value for key, value in data.items() if key in ("id", "tags", "images")}


def requirer_run(
    units: dict[int, dict[str, str]],
) -> tuple[list[ProviderImages], ProviderImages | None, testing.Context[RequirerCharm]]:
    relation = testing.Relation("image", remote_app_name="builder", remote_units_data=units)
    ctx = testing.Context(RequirerCharm, meta=REQUIRER_META)
    remote_unit = min(units)
    with ctx(
        ctx.on.relation_changed(relation, remote_unit=remote_unit),
        testing.State(relations=[relation]),
    ) as mgr:
        mgr.run()
        current = mgr.charm.image.image(live(mgr.charm, relation))
        return mgr.charm.seen, current, ctx


# --- provider: reading credentials -------------------------------------------------------------


def test_full_credentials_are_read() -> None:
    creds = provider_credentials(CREDS)
    assert creds == CloudCredentials(**CREDS)
    assert creds is not None and creds.cloud_id.startswith("runners_builder_")
    assert creds.legacy_cloud_id == "runners_builder"


@pytest.mark.parametrize("missing", sorted(CREDS))
def test_half_filled_unit_is_ignored(missing: str, caplog: pytest.LogCaptureFixture) -> None:
    partial = {key: value for key, value in CREDS.items() if key != missing}
    with caplog.at_level(logging.DEBUG):
        assert provider_credentials(partial) is None
    assert f"missing credential keys: {missing}" in caplog.text
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize(
    ("key", "value"),
    [("auth_url", "keystone.example:5000"), ("auth_url", ""), ("password", ""), ("username", "")],
)
def test_invalid_credentials_are_ignored(
    key: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        assert provider_credentials({**CREDS, key: value}) is None
    assert f"invalid credentials: {key}:" in caplog.text
    assert PASSWORD not in caplog.text


def test_unit_without_any_credentials_is_skipped_quietly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert provider_credentials({}) is None
    assert "Ignoring" not in caplog.text


def test_first_complete_unit_wins_over_half_filled_ones() -> None:
    half = {"auth_url": CREDS["auth_url"], "password": "half-pw"}
    assert provider_credentials(half, OTHER_CREDS, CREDS) == CloudCredentials(**OTHER_CREDS)


def test_units_ordered_by_number_not_by_text() -> None:
    units = {10: OTHER_CREDS, 2: CREDS}
    relation = testing.Relation("image", remote_units_data=units)
    _, charm = provider_run(relation)
    creds = charm.image.credentials(live(charm, relation))
    assert creds == CloudCredentials(**CREDS)


def test_two_relations_give_two_clouds() -> None:
    first = testing.Relation(
        "image", remote_app_name="github-runner", remote_units_data={0: CREDS}
    )
    second = testing.Relation("image", remote_app_name="garm", remote_units_data={0: OTHER_CREDS})
    pending = testing.Relation("image", remote_app_name="pending", remote_units_data={0: {}})
    state, charm = provider_run(first, second, pending)
    clouds = charm.image.requirer_clouds()
    assert clouds == {
        CloudCredentials(**CREDS).cloud_id: CloudCredentials(**CREDS),
        CloudCredentials(**OTHER_CREDS).cloud_id: CloudCredentials(**OTHER_CREDS),
    }
    assert state.unit_status == testing.ActiveStatus(f"clouds: {','.join(sorted(clouds))}")


def test_clouds_with_the_same_names_elsewhere_get_their_own_ids() -> None:
    """Two regions, two OpenStacks, two domains: same project and user names, four clouds."""
    variants = [
        CREDS,
        {**CREDS, "auth_url": "https://keystone.region-two.example:5000/v3"},
        {**CREDS, "project_domain_name": "other"},
        {**CREDS, "user_domain_name": "other"},
    ]
    ids = {CloudCredentials(**creds).cloud_id for creds in variants}
    assert len(ids) == 4
    assert all(i.startswith("runners_builder_") for i in ids)
    # The same cloud keeps its id whatever the password, or a slash ending the URL.
    same = {**CREDS, "password": "rotated", "auth_url": CREDS["auth_url"] + "/"}
    assert CloudCredentials(**same).cloud_id == CloudCredentials(**CREDS).cloud_id


def test_cloud_id_never_holds_a_list_separator() -> None:
    odd = {**CREDS, "project_name": "a,b c", "username": "x;y"}
    assert CloudCredentials(**odd).cloud_id.startswith("a-b-c_x-y_")


def test_password_not_in_repr() -> None:
    assert PASSWORD not in repr(CloudCredentials(**CREDS))


# --- provider: publishing ----------------------------------------------------------------------


def test_publish_writes_id_tags_and_images_exactly() -> None:
    relation = testing.Relation("image", remote_units_data={0: CREDS})
    state, _ = provider_run(relation)
    assert image_keys(state, relation) == {
        "id": "img-noble-x64",
        "tags": "x64,noble",
        "images": '[{"id":"img-noble-x64","tags":"x64,noble"},'
        '{"id":"img-jammy-x64","tags":"x64,jammy"},'
        '{"id":"img-noble-arm64","tags":"arm64,noble"}]',
    }


def test_publish_nothing_clears_and_clear_removes_only_image_keys() -> None:
    relation = testing.Relation(
        "image",
        remote_units_data={0: {"auth_url": CREDS["auth_url"]}},
        local_unit_data={"id": "old", "tags": "x64,noble", "images": "[]", "other": "kept"},
    )
    state, _ = provider_run(relation)
    assert image_keys(state, relation) == {}
    assert unit_data(state, relation)["other"] == "kept"


def test_publish_empty_list_clears() -> None:
    relation = testing.Relation("image", local_unit_data={"id": "old", "tags": "x64,noble"})
    ctx = testing.Context(ProviderCharm, meta=PROVIDER_META)
    with ctx(ctx.on.update_status(), testing.State(relations=[relation])) as mgr:
        charm = mgr.charm
        charm.image.publish(live(charm, relation), [])
        state = mgr.run()
    assert image_keys(state, relation) == {}


def test_published_image_rejects_comma_in_arch_or_base() -> None:
    with pytest.raises(ValueError, match="arch"):
        PublishedImage(id="x", arch="x64,arm64", base="noble")
    with pytest.raises(ValueError, match="base"):
        PublishedImage(id="x", arch="x64", base="")
    assert PublishedImage(id="x", arch="arm64", base="jammy").tags == "arm64,jammy"


# --- requirer ----------------------------------------------------------------------------------


def test_publish_credentials_writes_the_six_keys() -> None:
    relation = testing.Relation("image")
    ctx = testing.Context(RequirerCharm, meta=REQUIRER_META)
    with ctx(ctx.on.relation_joined(relation), testing.State(relations=[relation])) as mgr:
        charm = mgr.charm
        creds = CloudCredentials(**CREDS)
        charm.image.publish_credentials(live(charm, relation), creds)
        state = mgr.run()
    data = unit_data(state, relation)
    assert {key: data[key] for key in CREDS} == CREDS
    # What the requirer writes, the provider reads back.
    assert CloudCredentials.from_databag(data) == creds


def test_new_style_data_emits_image_changed() -> None:
    published = ProviderImages.from_published(IMAGES).to_databag()
    seen, current, ctx = requirer_run({0: published})
    expected = ProviderImages(
        id="img-noble-x64",
        tags="x64,noble",
        images=(
            ImageRef(id="img-noble-x64", tags="x64,noble"),
            ImageRef(id="img-jammy-x64", tags="x64,jammy"),
            ImageRef(id="img-noble-arm64", tags="arm64,noble"),
        ),
    )
    assert seen == [expected]
    assert current == expected
    assert any(isinstance(event, ImageChangedEvent) for event in ctx.emitted_events)


def test_old_style_data_gives_a_list_of_one() -> None:
    seen, current, _ = requirer_run({0: {"id": "img-1", "tags": "x64,jammy"}})
    expected = ProviderImages(
        id="img-1", tags="x64,jammy", images=(ImageRef(id="img-1", tags="x64,jammy"),)
    )
    assert seen == [expected]
    assert current == expected


def test_no_data_yet_no_event_no_error(caplog: pytest.LogCaptureFixture) -> None:
    seen, current, _ = requirer_run({0: {}})
    assert (seen, current) == ([], None)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"id": "img-1", "tags": "x64,noble", "images": "not json"}, "images: not valid JSON"),
        (
            {"id": "img-1", "tags": "x64,noble", "images": "[]"},
            "images: Value error, the list is empty",
        ),
        (
            {"id": "img-1", "tags": "x64,noble", "images": '[{"tags":"x64,noble"}]'},
            "images.0.id: Field required",
        ),
        (
            {"id": "img-1", "tags": "x64,noble", "images": '{"id":"img-1"}'},
            "images: Input should be a valid",
        ),
        ({"id": "img-1"}, "tags: missing"),
    ],
)
def test_malformed_provider_data_logs_and_emits_nothing(
    data: dict[str, str], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen, current, _ = requirer_run({0: data})
    assert (seen, current) == ([], None)
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    # Logged by the event handler, and again by the test's own image() call.
    assert len(errors) == 2
    assert all(e.startswith("Ignoring malformed image data from builder/0: ") for e in errors)
    assert all(message in e for e in errors)


def test_malformed_unit_skipped_for_a_valid_one() -> None:
    units = {0: {"id": "broken", "images": "{"}, 1: {"id": "img-1", "tags": "x64,noble"}}
    seen, current, _ = requirer_run(units)
    assert current is not None and current.id == "img-1"
    assert [image.id for image in seen] == ["img-1"]


def test_provider_and_requirer_round_trip() -> None:
    published = ProviderImages.from_published(IMAGES[1:])
    assert ProviderImages.from_databag(published.to_databag()) == published
    assert published.id == "img-jammy-x64" and published.tags == "x64,jammy"


def test_credentials_from_databag_names_missing_keys() -> None:
    with pytest.raises(InvalidDataError, match="missing credential keys: password, username"):
        CloudCredentials.from_databag(
            {k: v for k, v in CREDS.items() if k not in ("password", "username")}
        )


def test_deferred_image_changed_keeps_its_data() -> None:
    """A requirer that defers the event gets the same image data when it is re-emitted."""

    class DeferringCharm(RequirerCharm):
        def _on_image_changed(self, event: ImageChangedEvent) -> None:
            super()._on_image_changed(event)
            event.defer()

    relation = testing.Relation(
        "image", remote_units_data={0: {"id": "img-1", "tags": "x64,noble"}}
    )
    ctx = testing.Context(DeferringCharm, meta=REQUIRER_META)
    state = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0), testing.State(relations=[relation])
    )
    snapshots: list[dict[str, Any]] = [
        deferred.snapshot_data
        for deferred in state.deferred
        if deferred.name.endswith("image_changed")
    ]
    assert snapshots and snapshots[0]["image"]["id"] == "img-1"
    with ctx(ctx.on.update_status(), state) as mgr:
        mgr.run()
        assert [image.id for image in mgr.charm.seen] == ["img-1"]


def test_from_published_needs_an_image() -> None:
    with pytest.raises(ValueError, match="at least one image"):
        ProviderImages.from_published([])


def test_requirer_reads_what_the_provider_charm_wrote() -> None:
    """The provider's output databag, as Juju would hand it over, is the requirer's input."""
    relation = testing.Relation("image", remote_units_data={0: CREDS})
    state, _ = provider_run(relation)
    seen, current, _ = requirer_run({0: dict(unit_data(state, relation))})
    assert current == ProviderImages.from_published(IMAGES)
    assert seen == [current]


# --- hostile requirers (issue 11) --------------------------------------------------------------


@pytest.mark.parametrize("key", [k for k in CREDS if k != "auth_url"])
@pytest.mark.parametrize(
    "value",
    ["nul\0byte", "new\nline", "tab\there", "esc\x1b[31m", "del\x7f", "line\u2028sep", "x" * 5000],
)
def test_control_characters_and_huge_values_are_refused(key: str, value: str) -> None:
    with pytest.raises(InvalidDataError) as raised:
        CloudCredentials.from_databag({**CREDS, key: value})
    assert key in str(raised.value)
    assert value not in str(raised.value)


def test_every_field_is_bounded() -> None:
    assert CloudCredentials.from_databag({**CREDS, "username": "u" * 255}).username == "u" * 255
    for key, limit in [("username", 255), ("password", 4096)]:
        with pytest.raises(InvalidDataError, match=key):
            CloudCredentials.from_databag({**CREDS, key: "u" * (limit + 1)})
    with pytest.raises(InvalidDataError, match="auth_url"):
        CloudCredentials.from_databag({**CREDS, "auth_url": "https://k/" + "a" * 2048})
    with pytest.raises(InvalidDataError, match="username"):
        CloudCredentials.from_databag({**CREDS, "username": "u" * 140_000})


@pytest.mark.parametrize("value", ["-evil", "--help", "u,builder", " spaced ", "ünïcödé ✓", "'"])
def test_odd_but_printable_names_are_data(value: str) -> None:
    creds = CloudCredentials.from_databag({**CREDS, "username": value, "project_name": value})
    assert creds.username == value
    assert "," not in creds.cloud_id and "\n" not in creds.cloud_id


def _relations(*datas: dict[str, str]) -> list[testing.Relation]:
    return [
        testing.Relation("image", id=10 + n, remote_app_name=f"app{n}", remote_units_data={0: d})
        for n, d in enumerate(datas)
    ]


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_earliest_relation_owns_a_cloud_a_copycat_is_refused(
    order: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    """A requirer that copies another's identity with its own password gets nothing."""
    victim, copycat = _relations(CREDS, {**CREDS, "password": "attacker-pw"})
    relations = [(victim, copycat)[i] for i in order]
    _, charm = provider_run(*relations)
    clouds = charm.image.requirer_clouds()
    assert clouds == {CloudCredentials(**CREDS).cloud_id: CloudCredentials(**CREDS)}
    assert charm.image.served_credentials(live(charm, victim)) == CloudCredentials(**CREDS)
    assert charm.image.served_credentials(live(charm, copycat)) is None
    assert "Not serving relation 11" in caplog.text
    assert "attacker-pw" not in caplog.text and PASSWORD not in caplog.text


def test_identical_credentials_share_a_cloud() -> None:
    first, second = _relations(CREDS, CREDS)
    _, charm = provider_run(first, second)
    assert len(charm.image.requirer_clouds()) == 1
    assert charm.image.served_credentials(live(charm, second)) == CloudCredentials(**CREDS)


@pytest.mark.parametrize(
    "images",
    ["[" * 100_000 + "]" * 100_000, '[{"id":"a","tags":"x64,noble"}' + " " * 70_000 + "]"],
)
def test_deep_or_huge_images_json_is_invalid_data(images: str) -> None:
    with pytest.raises(InvalidDataError, match="images"):
        ProviderImages.from_databag({"id": "a", "tags": "x64,noble", "images": images})
