"""Several units: only the leader builds, every unit publishes the same, leadership moves.

Each unit is the charm under Scenario on its own temporary machine (own state dir, fake CLI and
juju-exec, and the real detached runner). `Model` carries what Juju would between the units'
hooks: the peer relation's application data and every unit's own peer data, and what each unit
publishes on the image relation.
"""

import dataclasses
import datetime
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ops import testing

import machine_files
import relation_peers
import unit_paths
from catalogue import Catalogue
from charm import GithubRunnerImageBuilderCharm
from charm_helpers import (
    RUNNERS,
    Machine,
    build_running,
    image_relation,
    new_machine,
    password_secret,
    valid_config,
    wait_until,
)

APP = "github-runner-image-builder"
PEER_ID = 90
IMAGE_KEYS = ("id", "tags", "images")
Ctx = testing.Context[GithubRunnerImageBuilderCharm]
Event = Callable[[Ctx], Any]  # ctx.on.<event>(...)


def name(unit: int) -> str:
    return f"{APP}/{unit}"


@dataclasses.dataclass
class Model:
    """What Juju keeps between hooks, for units 0..n-1 of one application."""

    machines: dict[int, Machine]
    leader: int
    relation: testing.Relation = dataclasses.field(default_factory=image_relation)
    config: dict[str, str | int] = dataclasses.field(default_factory=dict)
    secret: testing.Secret = dataclasses.field(default_factory=password_secret)
    app_data: dict[str, str] = dataclasses.field(default_factory=dict)
    unit_data: dict[int, dict[str, str]] = dataclasses.field(default_factory=dict)
    published: dict[int, dict[str, str]] = dataclasses.field(default_factory=dict)
    units: list[int] = dataclasses.field(default_factory=list)
    last: dict[int, testing.State] = dataclasses.field(default_factory=dict)
    action_results: dict[str, object] | None = None

    def __post_init__(self) -> None:
        self.config = valid_config(self.secret)
        self.units = self.units or sorted(self.machines)

    def state(self, unit: int) -> testing.State:
        peer = testing.PeerRelation(
            relation_peers.PEER_RELATION,
            id=PEER_ID,
            local_app_data=dict(self.app_data),
            local_unit_data=dict(self.unit_data.get(unit, {})),
            peers_data={u: dict(self.unit_data.get(u, {})) for u in self.units if u != unit},
        )
        images = dataclasses.replace(
            self.relation, local_unit_data=dict(self.published.get(unit, {}))
        )
        return testing.State(
            config=self.config,
            secrets={self.secret},
            relations={peer, images},
            leader=unit == self.leader,
        )

    def _absorb(self, unit: int, out: testing.State) -> testing.State:
        peer = out.get_relation(PEER_ID)
        assert isinstance(peer, testing.PeerRelation)
        if unit == self.leader:
            self.app_data = dict(peer.local_app_data)
        else:  # Juju refuses app data from a non-leader; so does ops, before it gets here
            assert dict(peer.local_app_data) == self.app_data
        self.unit_data[unit] = dict(peer.local_unit_data)
        data: dict[str, str] = dict(out.get_relation(self.relation.id).local_unit_data)
        self.published[unit] = {k: v for k, v in data.items() if k in IMAGE_KEYS}
        self.last[unit] = out
        return out

    def run(self, unit: int, event: Event) -> testing.State:
        ctx: Ctx = testing.Context(GithubRunnerImageBuilderCharm, unit_id=unit)
        out = ctx.run(event(ctx), self.state(unit))
        self.action_results = ctx.action_results
        return self._absorb(unit, out)

    def emit(self, unit: int, custom: str) -> testing.State:
        """A custom event (build_finished, run) as its own dispatch, as juju-exec brings it."""
        ctx: Ctx = testing.Context(GithubRunnerImageBuilderCharm, unit_id=unit)
        with ctx(ctx.on.start(), self.state(unit)) as manager:
            getattr(manager.charm.on, custom).emit()
            out: testing.State = manager.run()
        return self._absorb(unit, out)

    def peers_changed(self, unit: int) -> testing.State:
        other = next(u for u in self.units if u != unit)
        return self.run(
            unit,
            lambda ctx: ctx.on.relation_changed(
                self.state(unit).get_relation(PEER_ID), remote_unit=other
            ),
        )

    def status(self, unit: int) -> Any:
        return self.last[unit].unit_status

    def catalogue(self) -> Catalogue:
        return Catalogue.from_json(self.app_data[relation_peers.CATALOGUE])


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[int, Machine]]:
    machines = {unit: new_machine(tmp_path / f"unit-{unit}") for unit in range(3)}
    for unit, machine in machines.items():  # unit 1's fake CLI builds img-...-101 and so on
        (machine.home / "counter").write_text(str(100 * unit))
    by_unit = {name(unit): m.paths for unit, m in machines.items()}
    monkeypatch.setattr(unit_paths, "default_paths", lambda charm_dir, unit: by_unit[unit])
    monkeypatch.setattr(
        machine_files, "apt_install", machines[0].apt_calls.append
    )  # never the real one
    yield machines
    for machine in machines.values():
        machine.release()
        wait_until(lambda m=machine: not build_running(m.paths))  # type: ignore[misc]


def run_action(ctx: Ctx) -> Any:
    return ctx.on.action("run")


def _built(model: Model, unit: int, callbacks: int) -> None:
    """Wait for the unit's build and bring its build_finished event."""
    model.machines[unit].wait_for_callbacks(callbacks)
    model.emit(unit, "build_finished")


def test_only_the_leader_builds_and_every_unit_publishes_the_same(
    cluster: dict[int, Machine],
) -> None:
    model = Model({0: cluster[0], 1: cluster[1]}, leader=0)
    model.run(0, run_action)
    assert model.action_results is not None and model.action_results["result"] == "started"
    _built(model, 0, 1)
    assert model.published[0]["id"] == f"img-{RUNNERS}-noble-1"
    assert model.app_data[relation_peers.LEADER] == name(0)

    # The standby unit refuses to build and names the leader; its schedule builds nothing.
    with pytest.raises(testing.ActionFailed) as failure:
        model.run(1, run_action)
    assert failure.value.message == (
        f"this unit is on standby: the leader {name(0)} builds; run the action there: "
        f"juju run {name(0)} run"
    )
    model.emit(1, "run")
    model.run(1, lambda ctx: ctx.on.config_changed())
    assert cluster[1].cli_calls() == []
    assert not (cluster[1].paths.cron_dir / f"{APP}-1").exists()
    assert (cluster[0].paths.cron_dir / f"{APP}-0").exists()

    # It publishes exactly what the leader publishes, and says whose images they are.
    model.peers_changed(1)
    assert model.published[1] == model.published[0]
    assert model.status(1) == testing.ActiveStatus(
        f"Standby: serving the images of the leader {name(0)} (1 of 1 clouds)"
    )
    assert len(cluster[0].build_calls()) == 1


def test_leader_change_mid_build_hands_the_result_over_and_prunes_nothing_published(
    cluster: dict[int, Machine],
) -> None:
    model = Model(cluster, leader=0)
    model.run(0, run_action)
    _built(model, 0, 1)
    for unit in (1, 2):
        model.peers_changed(unit)
    first = f"img-{RUNNERS}-noble-1"
    assert {model.published[u]["id"] for u in range(3)} == {first}

    # Unit 0 starts a second build; leadership moves to unit 1 while it runs.
    cluster[0].plan(build={"wait": True})
    model.run(0, run_action)
    cluster[0].wait_for_build_waiting()
    model.leader = 1
    model.run(1, lambda ctx: ctx.on.leader_elected())
    assert (cluster[1].paths.cron_dir / f"{APP}-1").exists()  # the schedule moved
    assert cluster[1].cli_calls() == []  # every cloud has an image: nothing to do at once
    model.run(0, lambda ctx: ctx.on.update_status())
    assert not (cluster[0].paths.cron_dir / f"{APP}-0").exists()
    assert isinstance(model.status(0), testing.MaintenanceStatus)
    assert model.status(0).message.endswith("; its images go to the leader")

    # The old leader's build ends: it hands the images over in its peer data.
    cluster[0].plan(build={})
    cluster[0].release()
    _built(model, 0, 2)
    handover = Catalogue.from_json(model.unit_data[0][relation_peers.HANDOVER])
    second = handover.get(RUNNERS, "noble", "x64")
    assert second is not None and second.id != first
    # The new leader takes it in and publishes it; unit 2 has not seen it yet.
    model.peers_changed(1)
    current = model.catalogue().get(RUNNERS, "noble", "x64")
    assert current is not None and current.id == second.id
    assert model.published[1]["id"] == second.id
    assert model.published[2]["id"] == first

    # A build now must spare both the new image and the one unit 2 still publishes.
    model.run(1, run_action)
    cluster[1].wait_for_callbacks(1)
    protect = set(cluster[1].build_specs()[0].prune.protect)
    assert {first, second.id} <= protect
    model.emit(1, "build_finished")
    for unit in (0, 2):
        model.peers_changed(unit)
    assert {model.published[u]["id"] for u in range(3)} == {model.published[1]["id"]}
    assert relation_peers.HANDOVER not in model.unit_data[0]  # taken in: the old leader let it go
    assert len(cluster[2].cli_calls()) == 0


def test_a_late_handover_never_replaces_a_newer_image(cluster: dict[int, Machine]) -> None:
    model = Model({0: cluster[0], 1: cluster[1]}, leader=0)
    model.run(0, run_action)
    _built(model, 0, 1)
    stale = Catalogue.from_json(model.app_data[relation_peers.CATALOGUE])
    model.leader = 1
    model.run(1, run_action)
    _built(model, 1, 1)
    newer = model.catalogue().get(RUNNERS, "noble", "x64")
    # Unit 0's older build shows up as a handover after unit 1's newer one.
    model.unit_data[0][relation_peers.HANDOVER] = stale.to_json()
    model.peers_changed(1)
    assert model.catalogue().get(RUNNERS, "noble", "x64") == newer


def test_a_unit_joining_late_serves_the_leaders_images_without_building(
    cluster: dict[int, Machine],
) -> None:
    model = Model({0: cluster[0], 1: cluster[1]}, leader=0)
    model.run(0, run_action)
    _built(model, 0, 1)
    model.peers_changed(1)
    # Unit 2 arrives: its first hooks already see the leader's catalogue.
    model.units = [0, 1, 2]
    model.machines[2] = cluster[2]
    relation = model.state(2).get_relation(model.relation.id)
    model.run(2, lambda ctx: ctx.on.relation_joined(relation, remote_unit=0))
    assert model.published[2] == model.published[0]
    model.run(2, lambda ctx: ctx.on.config_changed())
    assert cluster[2].cli_calls() == []
    assert model.status(2) == testing.ActiveStatus(
        f"Standby: serving the images of the leader {name(0)} (1 of 1 clouds)"
    )
    # The leader learns what unit 2 publishes, and protects it.
    assert json.loads(model.unit_data[2][relation_peers.PUBLISHED]) == [model.published[0]["id"]]


def test_a_unit_that_regains_leadership_takes_in_its_own_handover(
    cluster: dict[int, Machine],
) -> None:
    model = Model({0: cluster[0], 1: cluster[1]}, leader=0)
    model.run(0, run_action)
    _built(model, 0, 1)
    first = model.catalogue().get(RUNNERS, "noble", "x64")
    assert first is not None
    # Unit 0 lost leadership mid-build and handed its result over; then it is leader again.
    later = first.model_copy(
        update={"id": "img-late", "built_at": first.built_at + datetime.timedelta(hours=1)}
    )
    model.unit_data[0][relation_peers.HANDOVER] = Catalogue.of([later]).to_json()
    model.run(0, lambda ctx: ctx.on.leader_elected())
    assert model.catalogue().get(RUNNERS, "noble", "x64") == later
    assert model.published[0]["id"] == "img-late"
    assert relation_peers.HANDOVER not in model.unit_data[0]


def test_switch_from_canonical_with_two_units_protects_what_each_published(
    cluster: dict[int, Machine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of Canonical's units built and published its own image (read from its image.py)."""
    monkeypatch.setattr(machine_files.MachineFiles, "_install_venv", lambda self: None)
    model = Model({0: cluster[0], 1: cluster[1]}, leader=0)
    for unit in (0, 1):
        images = [{"id": f"can-{unit}", "tags": "x64,noble"}]
        model.published[unit] = {"id": f"can-{unit}", "tags": "x64,noble"}
        model.published[unit]["images"] = json.dumps(images)  # Canonical's spacing
    cluster[0].plan(build={"wait": True})
    # Juju upgrades the units one by one; here the standby first.
    model.run(1, lambda ctx: ctx.on.upgrade_charm())
    assert cluster[1].cli_calls() == []
    assert model.published[1]["id"] == "can-1"
    model.run(0, lambda ctx: ctx.on.upgrade_charm())
    cluster[0].wait_for_build_waiting()
    protect = set(cluster[0].build_specs()[0].prune.protect)
    assert {"can-0", "can-1"} <= protect
    # Until our first build is in, each unit keeps publishing what it published.
    model.peers_changed(1)
    assert (model.published[0]["id"], model.published[1]["id"]) == ("can-0", "can-0")
    cluster[0].plan(build={})
    cluster[0].release()
    _built(model, 0, 1)
    model.peers_changed(1)
    ours = f"img-{RUNNERS}-noble-1"
    assert (model.published[0]["id"], model.published[1]["id"]) == (ours, ours)


def test_a_new_leader_leaves_the_old_leaders_running_job_alone(
    cluster: dict[int, Machine],
) -> None:
    model = Model({0: cluster[0], 1: cluster[1]}, leader=0)
    cluster[0].plan(build={"wait": True})
    model.run(0, run_action)  # the first build: no cloud has an image yet
    cluster[0].wait_for_build_waiting()
    assert json.loads(model.unit_data[0][relation_peers.BUILDING]) == [RUNNERS]
    model.leader = 1
    model.run(1, lambda ctx: ctx.on.leader_elected())
    assert cluster[1].cli_calls() == []  # RUNNERS lacks images, but unit 0's job serves it
    cluster[0].plan(build={})
    cluster[0].release()
    _built(model, 0, 1)
    assert relation_peers.BUILDING not in model.unit_data[0]
    model.peers_changed(1)
    assert model.published[1]["id"] == f"img-{RUNNERS}-noble-1"
    assert model.status(1) == testing.ActiveStatus(
        "No build has run on this unit yet; 1 of 1 clouds served"
    )
