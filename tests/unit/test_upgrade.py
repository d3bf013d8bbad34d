"""Upgrades: older cloud ids move without a rebuild; a switch from Canonical's charm keeps its IDs.

Each test starts from the files and relation data an earlier charm left: this charm before
cloud ids were unique (`<project>_<user>`, a catalogue of `{cloud: {"base/arch": id}}`), or
Canonical's github-runner-image-builder (read from its source: src/charm.py, src/image.py,
src/builder.py, src/state.py of canonical/github-runner-image-builder-operator): the same
config names, the unit databag keys `id`, `tags`, `images` (json.dumps with spaces), images
named `<app>-<base>-<arch>`, clouds `<project>_<user>` in /home/ubuntu/clouds.yaml, and
/etc/cron.d/build-runner-image dispatching `run`.
"""

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ops import testing

import machine_files
from catalogue import ADOPTED, Catalogue
from charm import GithubRunnerImageBuilderCharm
from charm_helpers import (
    PASSWORD,
    RUNNERS,
    Machine,
    emit,
    password_secret,
    requirer_data,
    valid_config,
)
from charms.github_runner_image_builder.v0.image import CloudCredentials, ProviderImages
from config import ProxyConfig, load_config

Ctx = testing.Context[GithubRunnerImageBuilderCharm]
APP = "github-runner-image-builder"
CHARMCRAFT_YAML = Path(__file__).parents[2] / "charmcraft.yaml"
# Every option of Canonical's charmcraft.yaml (its revision of 2026-11).
CANONICAL_OPTIONS = {
    "architecture",
    "base-image",
    "build-flavor",
    "build-network",
    "build-interval",
    "openstack-auth-url",
    "openstack-password-secret",
    "openstack-project-domain-name",
    "openstack-project-name",
    "openstack-user-domain-name",
    "openstack-user-name",
    "revision-history-limit",
    "runner-version",
    "script-url",
    "script-secret-id",
    "script-secret",
}


@pytest.fixture
def no_venv(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """upgrade-charm reinstalls the CLI; that is tested elsewhere."""
    monkeypatch.setattr(machine_files.MachineFiles, "_install_venv", lambda self: None)
    yield


def _published(relation: testing.RelationBase) -> dict[str, str]:
    data: dict[str, str] = dict(relation.local_unit_data)
    return {k: v for k, v in data.items() if k in ("id", "tags", "images")}


def _canonical_databag(*pairs: tuple[str, str]) -> dict[str, str]:
    """What Canonical's image.py writes: the first image as id/tags, all in `images`."""
    images = [{"id": image_id, "tags": tags} for image_id, tags in pairs]
    return {"id": pairs[0][0], "tags": pairs[0][1], "images": json.dumps(images)}


def _settings_digest(config: dict[str, str | int]) -> str:
    """Return the digest an earlier revision stored for this config (Juju fills in the defaults).

    Earlier revisions stored an unkeyed digest; the upgrade carries it over as the keyed one.
    """
    options = yaml.safe_load(CHARMCRAFT_YAML.read_text())["config"]["options"]
    defaults = {k: v["default"] for k, v in options.items() if "default" in v}
    full = defaults | config
    return load_config(
        full, lambda _: {"password": PASSWORD}, ProxyConfig(), "github-runner-image-builder"
    ).legacy_fingerprint()


def _same_images(left: dict[str, str], right: dict[str, str]) -> bool:
    """Whether two databags publish the same images (however the JSON is spaced)."""
    return ProviderImages.from_databag(left) == ProviderImages.from_databag(right)


def _old_clouds_yaml(machine: Machine, entries: dict[str, dict[str, str]]) -> None:
    clouds = {name: {"auth": auth, "identity_api_version": 3} for name, auth in entries.items()}
    machine.paths.state_dir.mkdir(parents=True, exist_ok=True)
    machine.paths.clouds_yaml.write_text(yaml.safe_dump({"clouds": clouds}))


def test_upgrade_moves_an_old_cloud_id_without_a_rebuild(
    ctx: Ctx, machine: Machine, no_venv: None
) -> None:
    secret = password_secret()
    config = valid_config(secret)
    old = {"id": "img-old", "tags": "x64,noble", "images": '[{"id":"img-old","tags":"x64,noble"}]'}
    relation = testing.Relation(
        "image", remote_units_data={0: requirer_data("runners", "runner")}, local_unit_data=old
    )
    machine.paths.state_dir.mkdir(parents=True)
    machine.paths.catalogue.write_text(json.dumps({"runners_runner": {"noble/x64": "img-old"}}))
    machine.paths.fingerprint.write_text(_settings_digest(config))
    _old_clouds_yaml(machine, {"runners_runner": requirer_data("runners", "runner")})

    out = ctx.run(
        ctx.on.upgrade_charm(),
        testing.State(config=config, secrets={secret}, relations={relation}, leader=True),
    )
    assert machine.cli_calls() == []  # no build, no lookup
    catalogue = Catalogue.from_json(machine.paths.catalogue.read_text())
    image = catalogue.get(RUNNERS, "noble", "x64")
    assert image is not None and image.id == "img-old"
    clouds = yaml.safe_load(machine.paths.clouds_yaml.read_text())["clouds"]
    assert sorted(clouds) == sorted(["builder", RUNNERS])
    assert _published(out.get_relation(relation.id)) == old
    # The peer relation is new in this revision: once Juju creates it, the leader shares the
    # migrated catalogue there.
    peer = testing.PeerRelation("peers")
    out = ctx.run(
        ctx.on.relation_created(peer),
        dataclasses.replace(out, relations=frozenset({*out.relations, peer})),
    )
    app_data: dict[str, str] = dict(out.get_relation(peer.id).local_app_data)
    shared = Catalogue.from_json(app_data["catalogue"])
    assert shared.get(RUNNERS, "noble", "x64") == image


def test_upgrade_separates_two_clouds_that_shared_an_id(
    ctx: Ctx, machine: Machine, no_venv: None
) -> None:
    """Two regions with the same project and user: the old charm served only the last one."""
    one = requirer_data("runners", "runner") | {"auth_url": "https://keystone.one:5000/v3"}
    two = requirer_data("runners", "runner") | {"auth_url": "https://keystone.two:5000/v3"}
    id_one = CloudCredentials.from_databag(one).cloud_id
    id_two = CloudCredentials.from_databag(two).cloud_id
    assert id_one != id_two
    # Both relations were given region two's image (the bug); clouds.yaml named region two.
    stale = {
        "id": "img-two",
        "tags": "x64,noble",
        "images": '[{"id":"img-two","tags":"x64,noble"}]',
    }
    rel_one = testing.Relation("image", remote_units_data={0: one}, local_unit_data=dict(stale))
    rel_two = testing.Relation("image", remote_units_data={0: two}, local_unit_data=dict(stale))
    secret = password_secret()
    config = valid_config(secret)
    machine.paths.state_dir.mkdir(parents=True)
    machine.paths.catalogue.write_text(json.dumps({"runners_runner": {"noble/x64": "img-two"}}))
    machine.paths.fingerprint.write_text(_settings_digest(config))
    _old_clouds_yaml(machine, {"runners_runner": two})
    machine.plan(latest={f"{id_one}/{APP}-noble-x64": "img-one"})

    st = testing.State(config=config, secrets={secret}, relations={rel_one, rel_two}, leader=True)
    out = ctx.run(ctx.on.upgrade_charm(), st)
    # Region two keeps its image; region one's own image is looked up, nothing is built.
    machine.wait_for_callbacks(1)
    assert [c["argv"] for c in machine.cli_calls()] == [
        [f"--os-cloud={id_one}", "latest-build-id", f"{APP}-noble-x64"]
    ]
    out = emit(ctx, out, "build_finished")
    assert _published(out.get_relation(rel_one.id))["id"] == "img-one"
    assert _published(out.get_relation(rel_two.id))["id"] == "img-two"
    assert machine.build_calls() == []


def test_canonical_config_names_carry_over(tmp_path: Path) -> None:
    ours = set(yaml.safe_load(CHARMCRAFT_YAML.read_text())["config"]["options"])
    # script-secret held secrets in plain config; Canonical's charm itself refuses it on any
    # Juju with secrets (3.3+) and asks for script-secret-id, which carries over.
    assert CANONICAL_OPTIONS - ours == {"script-secret"}


def test_switch_from_canonical_keeps_its_id_published_and_protected_until_our_build(
    ctx: Ctx, machine: Machine, no_venv: None
) -> None:
    secret = password_secret()
    config = valid_config(secret, **{"base-image": "jammy,noble"})
    theirs = _canonical_databag(("can-jammy", "x64,jammy"), ("can-noble", "x64,noble"))
    relation = testing.Relation(
        "image", remote_units_data={0: requirer_data("runners", "runner")}, local_unit_data=theirs
    )
    # What Canonical's charm left on the machine: its cron job and its clouds.yaml.
    for path in (machine.paths.canonical_cron, machine.paths.canonical_clouds_yaml):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("left by canonical\n")
    machine.plan(build={"wait": True})

    st = testing.State(config=config, secrets={secret}, relations={relation}, leader=True)
    out = ctx.run(ctx.on.upgrade_charm(), st)
    assert not machine.paths.canonical_cron.exists()  # it would dispatch `run` a second time
    assert not machine.paths.canonical_clouds_yaml.exists()  # passwords in clear
    # Its IDs are ours to serve now, and stay published while our first build runs ...
    catalogue = Catalogue.from_json(machine.paths.catalogue.read_text())
    assert [(i.base, i.id, i.built_at) for i in catalogue.images] == [
        ("jammy", "can-jammy", ADOPTED),
        ("noble", "can-noble", ADOPTED),
    ]
    assert _same_images(_published(out.get_relation(relation.id)), _published(relation))
    machine.wait_for_build_waiting()
    # ... which protects them from pruning.
    protect = machine.build_specs()[0].prune.protect
    assert {"can-jammy", "can-noble"} <= protect

    machine.plan(build={})
    machine.release()
    machine.wait_for_callbacks(1)
    out = emit(ctx, out, "build_finished")
    published = _published(out.get_relation(relation.id))
    assert published["id"] == f"img-{RUNNERS}-jammy-1"
    assert json.loads(published["images"]) == [
        {"id": f"img-{RUNNERS}-jammy-1", "tags": "x64,jammy"},
        {"id": f"img-{RUNNERS}-noble-1", "tags": "x64,noble"},
    ]
    assert Catalogue.from_json(machine.paths.catalogue.read_text()).ids() == {
        f"img-{RUNNERS}-jammy-1",
        f"img-{RUNNERS}-noble-1",
    }


def test_switch_from_canonical_with_a_failed_first_build_keeps_its_ids(
    ctx: Ctx, machine: Machine, no_venv: None
) -> None:
    secret = password_secret()
    config = valid_config(secret)
    theirs = _canonical_databag(("can-noble", "x64,noble"))
    relation = testing.Relation(
        "image", remote_units_data={0: requirer_data("runners", "runner")}, local_unit_data=theirs
    )
    machine.plan(build={"fail_bases": ["noble"]})
    st = testing.State(config=config, secrets={secret}, relations={relation}, leader=True)
    out = ctx.run(ctx.on.upgrade_charm(), st)
    machine.wait_for_callbacks(1)
    out = emit(ctx, out, "build_finished")
    assert _same_images(_published(out.get_relation(relation.id)), _published(relation))
    # The next build still protects it.
    out = ctx.run(ctx.on.action("run"), out)
    machine.wait_for_callbacks(2)
    assert "can-noble" in machine.build_specs()[1].prune.protect
