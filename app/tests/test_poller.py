"""The run's one poller: shared list calls, a fixed tick, and what each wait makes of them."""

import threading
import time

import pytest

from github_runner_image_builder.cancel import Cancellation, Cancelled
from github_runner_image_builder.cloud import servers
from github_runner_image_builder.cloud.backoff import WaitTimeoutError
from github_runner_image_builder.cloud.client import Cloud, ServerState
from github_runner_image_builder.cloud.poller import Poller


class ListingCloud(Cloud):
    """Servers whose status the test sets; counts the list calls."""

    def __init__(self) -> None:
        super().__init__("c", conn=object())
        self.states: dict[str, ServerState] = {}
        self.image_status: dict[str, str] = {}
        self.server_lists = 0
        self.image_lists: list[list[str]] = []
        self.deleted: list[str] = []
        self._lock = threading.Lock()

    def server_states(self, name_filter: str) -> dict[str, ServerState]:
        with self._lock:
            self.server_lists += 1
            return dict(self.states)

    def image_statuses(self, image_ids: list[str]) -> dict[str, str]:
        with self._lock:
            self.image_lists.append(image_ids)
            return {i: self.image_status[i] for i in image_ids if i in self.image_status}

    def delete_server(self, server_id: str) -> None:
        self.deleted.append(server_id)
        self.states.pop(server_id, None)


def _off(state: ServerState | None) -> bool | None:
    return True if state and state.status == "SHUTOFF" else None


def test_many_waiters_share_one_list_call_per_tick() -> None:
    cloud = ListingCloud()
    ids = [f"s{i}" for i in range(6)]
    cloud.states = {i: ServerState("ACTIVE") for i in ids}
    poller = Poller(cloud, "^p-", tick=0.05)
    done: dict[str, float] = {}

    def wait(server_id: str) -> None:
        poller.wait_server(server_id, _off, 10, server_id)
        done[server_id] = time.monotonic()

    threads = [threading.Thread(target=wait, args=(i,)) for i in ids]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    off_at = time.monotonic()
    for i in ids:
        cloud.states[i] = ServerState("SHUTOFF")
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    # One call per tick for all six waiters, give or take the ticks' alignment, not six.
    assert cloud.server_lists <= elapsed / 0.05 + 3
    assert poller.calls == cloud.server_lists
    # Every waiter saw the change within about a tick.
    assert max(done.values()) - off_at < 0.5


def test_a_fixed_tick_not_a_growing_backoff() -> None:
    cloud = ListingCloud()
    cloud.states = {"s": ServerState("ACTIVE")}
    pauses: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds
        if now[0] >= 100:
            cloud.states["s"] = ServerState("SHUTOFF")

    poller = Poller(cloud, "^p-", tick=2.0, sleep=sleep, clock=lambda: now[0])
    assert poller.wait_server("s", _off, 1000, "s")
    assert set(pauses) == {1.0}  # the cancellable pause sleeps in slices of at most 1 s
    assert now[0] == 100.0  # noticed at the first tick after the change
    assert cloud.server_lists == 50


def test_timeout_error_and_cancel() -> None:
    cloud = ListingCloud()
    cloud.states = {"s": ServerState("ACTIVE")}
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    poller = Poller(cloud, "^p-", tick=1.0, sleep=sleep, clock=lambda: now[0])
    with pytest.raises(WaitTimeoutError, match="timed out after 30 s waiting for s"):
        poller.wait_server("s", _off, 30, "s")
    assert now[0] == 30.0
    cloud.states["s"] = ServerState("ERROR", "boom")
    with pytest.raises(servers.ServerError, match="server s went to ERROR: boom"):
        servers.wait_for_power_off(poller, "s", 30)
    cancellation = Cancellation()
    cancellation.cancel()
    cloud.states["s"] = ServerState("ACTIVE")
    with pytest.raises(Cancelled):
        servers.wait_for_power_off(poller, "s", 30, cancellation)


def test_images_are_listed_by_the_ids_being_waited_for() -> None:
    cloud = ListingCloud()
    cloud.image_status = {"i1": "saving"}
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] >= 3:
            cloud.image_status["i1"] = "active"

    poller = Poller(cloud, "^p-", sleep=sleep, clock=lambda: now[0])
    status = poller.wait_image("i1", lambda s: s if s == "active" else None, 60, "i1")
    assert status == "active"
    assert cloud.image_lists == [["i1"]] * 3
    # A gone image reads as None.
    assert poller.wait_image("i2", lambda s: "gone" if s is None else None, 60, "i2") == "gone"


def test_boot_again_after_no_valid_host_then_succeed() -> None:
    cloud = ListingCloud()
    now = [0.0]
    created: list[str] = []
    recorded: list[str | None] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def create() -> str:
        server_id = f"s{len(created)}"
        created.append(server_id)
        failed = len(created) == 1
        cloud.states[server_id] = (
            ServerState("ERROR", "No valid host was found. There are not enough hosts")
            if failed
            else ServerState("ACTIVE")
        )
        return server_id

    poller = Poller(cloud, "^p-", sleep=sleep, clock=lambda: now[0])
    booted = servers.boot(
        cloud,
        poller,
        create,
        recorded.append,
        timeout=600,
        label="noble-x64",
        retry=servers.BootRetry(delay=(30, 30)),
        sleep=sleep,
        clock=lambda: now[0],
    )
    assert (booted.server_id, created, cloud.deleted) == ("s1", ["s0", "s1"], ["s0"])
    assert recorded == ["s0", None, "s1"]
    assert 33 <= now[0] <= 35  # boot + gone + 30 s pause + boot, in ticks


def test_no_boot_again_without_time_left() -> None:
    cloud = ListingCloud()
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def create() -> str:
        cloud.states["s"] = ServerState("ERROR", "No valid host was found.")
        return "s"

    poller = Poller(cloud, "^p-", sleep=sleep, clock=lambda: now[0])
    with pytest.raises(servers.ServerError, match="no time left within the timeout"):
        servers.boot(
            cloud,
            poller,
            create,
            lambda _: None,
            timeout=40,
            label="x",
            retry=servers.BootRetry(delay=(45, 60)),
            sleep=sleep,
            clock=lambda: now[0],
        )


def test_a_deletion_asked_for_earlier_is_waited_out_without_a_tick() -> None:
    """The clean-up's wait for a server deleted during the copy costs no pause at all."""
    cloud = ListingCloud()
    cloud.states = {"s": ServerState("SHUTOFF"), "other": ServerState("ACTIVE")}
    now = [0.0]
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    poller = Poller(cloud, "^p-", sleep=sleep, clock=lambda: now[0])
    asked_at = servers.request_delete(cloud, poller, "s")
    now[0] += 5  # the build copies meanwhile, and another wait lists the servers
    assert poller.wait_server("other", lambda s: s, 60, "other") == ServerState("ACTIVE")
    lists, pauses[:] = cloud.server_lists, []
    servers.delete(cloud, poller, "s", asked_at=asked_at)
    assert (pauses, cloud.server_lists) == ([], lists)  # that list, asked after, showed it gone
    # A list from before the deletion was asked for does not count: one fresh call, no pause.
    cloud.states["t"] = ServerState("SHUTOFF")
    poller.wait_server("t", lambda s: s, 60, "t")
    asked_at = servers.request_delete(cloud, poller, "t")
    now[0] += 5
    servers.delete(cloud, poller, "t", asked_at=asked_at)
    assert cloud.server_lists == lists + 2 and cloud.deleted == ["s", "t"]


def _booted_on_a_fake_clock(
    cloud: ListingCloud, status: str, off_at: float | None = None
) -> tuple[Poller, servers.Booted, list[float]]:
    """Boot server "s", first listed as `status` (SHUTOFF from `off_at` on); the clock moves
    only in the poller's pauses."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if off_at is not None and now[0] >= off_at:
            cloud.states["s"] = ServerState("SHUTOFF")

    def create() -> str:
        cloud.states["s"] = ServerState(status)
        return "s"

    poller = Poller(cloud, "^p-", sleep=sleep, clock=lambda: now[0])
    booted = servers.boot(
        cloud, poller, create, lambda _: None, timeout=60, label="x", sleep=sleep,
        clock=lambda: now[0],
    )  # fmt: skip
    return poller, booted, now


def test_a_guest_seen_off_by_its_boots_last_answer_costs_no_further_tick() -> None:
    """The wait for power-off counts every answer since the server's creation (a short guest)."""
    cloud = ListingCloud()
    # The guest is done (SHUTOFF) by the first list after its creation.
    poller, booted, now = _booted_on_a_fake_clock(cloud, "SHUTOFF")
    lists, at = cloud.server_lists, now[0]
    servers.wait_for_power_off(poller, booted.server_id, 60, since=booted.created_at)
    assert (cloud.server_lists, now[0]) == (lists, at)
    # Without `since` the same wait needs a list of its own, one tick later.
    servers.wait_for_power_off(poller, booted.server_id, 60)
    assert (cloud.server_lists, now[0]) == (lists + 1, at + poller.tick)


def test_a_guest_seen_running_by_its_boot_is_waited_for_by_later_answers() -> None:
    cloud = ListingCloud()
    poller, booted, now = _booted_on_a_fake_clock(cloud, "ACTIVE", off_at=2)
    assert now[0] == 1.0  # the boot's answer showed it ACTIVE
    servers.wait_for_power_off(poller, booted.server_id, 60, since=booted.created_at)
    assert (cloud.server_lists, now[0]) == (2, 2.0)


def test_a_slow_server_list_does_not_hold_up_an_image_list() -> None:
    """With a connection for images, each kind of list has its own lock."""
    servers, images = ListingCloud(), ListingCloud()
    images.image_status = {"i": "active"}
    listing = threading.Event()
    release = threading.Event()

    def slow_server_states(name_filter: str) -> dict[str, ServerState]:
        listing.set()
        release.wait(10)
        return {}

    servers.server_states = slow_server_states  # type: ignore[method-assign]
    poller = Poller(servers, "^p-", image_cloud=images, tick=0.01)
    waiter = threading.Thread(target=lambda: poller.wait_server("s", lambda s: True, 10, "s"))
    waiter.start()
    try:
        assert listing.wait(5)
        # The server list is still running: the image wait is answered all the same.
        assert poller.wait_image("i", lambda status: status, 5, "i") == "active"
    finally:
        release.set()
        waiter.join()
    assert images.image_lists == [["i"]]
