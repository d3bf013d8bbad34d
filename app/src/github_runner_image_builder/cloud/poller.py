"""One poller for every server and image of a `build` run: one list call per kind per tick.

Every wait of every build (base x arch) goes through it: a builder booting or powering off, a
server being gone, a snapshot becoming active; a second kind of server (a verification server)
is watched the same way. Whichever waiter's tick comes first makes the list call, under a
lock, and the others read its answer, so the API load is one server list and one image list
per tick however many builds run, and a change is seen within one tick: a fixed short tick,
not a growing backoff. A wait counts only answers asked for after it began, or after the
moment it names (`since`: when the deletion it waits out was asked for), so a wait for what
already happened costs no tick. The poller owns a connection of its own (openstacksdk
connections are not shared between threads); the lock serialises its use. Given a second
connection for images, each kind has its own lock, so a slow server list on a busy Nova does
not hold up the notice of a snapshot becoming active.
"""

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from github_runner_image_builder.cancel import NEVER, Cancellation
from github_runner_image_builder.cloud.backoff import WaitTimeoutError
from github_runner_image_builder.cloud.client import Cloud, ServerState

logger = logging.getLogger(__name__)

T = TypeVar("T")
V = TypeVar("V")

TICK = 1.0


class _Watch:
    """The last answer of one list call, when it was asked for, and the lock of its calls."""

    def __init__(self, lock: threading.Lock) -> None:
        self.answer: dict[str, object] = {}
        self.asked_at = -math.inf
        self.lock = lock
        self.calls = 0


class Poller:
    """Answers "what is the state of server/image X now" for all builds with shared calls."""

    def __init__(
        self,
        cloud: Cloud,
        server_filter: str,
        *,
        image_cloud: Cloud | None = None,
        tick: float = TICK,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Poll `cloud`; servers are listed with Nova's name filter `server_filter`.

        `image_cloud`: a second connection to the same cloud for the image lists (none, or
        `cloud` itself: `cloud`'s, under the one lock).
        """
        self._cloud = cloud
        self._image_cloud = image_cloud or cloud
        self._server_filter = server_filter
        self.tick = tick
        self._sleep = sleep
        self._clock = clock
        servers_lock = threading.Lock()  # `cloud`'s connection is used by one thread at a time
        self._servers = _Watch(servers_lock)
        shared = image_cloud is None or image_cloud is cloud
        self._images = _Watch(servers_lock if shared else threading.Lock())
        self._ids_lock = threading.Lock()
        self._image_ids: dict[str, int] = {}  # image ID → how many waiters watch it

    @property
    def calls(self) -> int:
        """Return the list calls made, for the report."""
        return self._servers.calls + self._images.calls

    def wait_server(
        self,
        server_id: str,
        until: Callable[[ServerState | None], T | None],
        timeout: float,
        what: str,
        cancellation: Cancellation = NEVER,
        *,
        since: float | None = None,
    ) -> T:
        """Return `until(state)` once not None; the state is None when the server is gone.

        `until` raises to fail at once (e.g. ERROR); WaitTimeoutError after `timeout` seconds;
        Cancelled at the next tick once `cancellation` is set. `since` (this poller's clock,
        see `now`): answers asked for after it count, instead of after the call.
        """
        return self._wait(
            lambda seen: self._fresh(self._servers, seen, self._list_servers),
            lambda answer: until(answer.get(server_id)),  # type: ignore[arg-type]
            timeout,
            what,
            cancellation,
            since=since,
        )

    def now(self) -> float:
        """Return this poller's clock: the time `since` is measured in."""
        return self._clock()

    def wait_image(
        self,
        image_id: str,
        until: Callable[[str | None], T | None],
        timeout: float,
        what: str,
        cancellation: Cancellation = NEVER,
    ) -> T:
        """Return `until(status)` once not None; the status is None when the image is gone."""
        with self._ids_lock:
            self._image_ids[image_id] = self._image_ids.get(image_id, 0) + 1
        try:
            return self._wait(
                lambda seen: self._fresh(self._images, seen, self._list_images),
                lambda answer: until(answer.get(image_id)),  # type: ignore[arg-type]
                timeout,
                what,
                cancellation,
                since=None,
            )
        finally:
            with self._ids_lock:
                self._image_ids[image_id] -= 1
                if not self._image_ids[image_id]:
                    del self._image_ids[image_id]

    def _wait(
        self,
        fresh: Callable[[float], tuple[dict[str, object], float]],
        until: Callable[[dict[str, object]], V | None],
        timeout: float,
        what: str,
        cancellation: Cancellation,
        *,
        since: float | None,
    ) -> V:
        begin = self._clock()
        deadline = begin + timeout
        seen = begin if since is None else min(since, begin)  # only later answers count
        while True:
            now = self._clock()
            cancellation.pause(max(0.0, min(seen + self.tick, deadline) - now), self._sleep)
            answer, seen = fresh(seen)
            result = until(answer)
            if result is not None:
                return result
            if self._clock() >= deadline:
                raise WaitTimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")

    def _fresh(
        self, watch: _Watch, newer_than: float, ask: Callable[[], dict[str, object]]
    ) -> tuple[dict[str, object], float]:
        """Return an answer asked for after `newer_than`: the last one, or a new list call."""
        with watch.lock:
            if watch.asked_at <= newer_than:
                asked_at = self._clock()
                watch.answer = ask()
                watch.asked_at = asked_at
                watch.calls += 1
            return watch.answer, watch.asked_at

    def _list_servers(self) -> dict[str, object]:
        return dict(self._cloud.server_states(self._server_filter))

    def _list_images(self) -> dict[str, object]:
        with self._ids_lock:
            watched = sorted(self._image_ids)
        return dict(self._image_cloud.image_statuses(watched))
