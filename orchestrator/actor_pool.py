"""The pool of training actors: sized by what the cluster can place, grown as nodes arrive.

An actor counts as *ready* once it answers a ping (its process runs and holds its CPUs and
GPUs); only ready actors are handed units, so a unit never waits on an actor that cannot be
placed. The pool asks Ray's autoscaler for what it wants (one bundle per actor; a no-op on
a cluster without one) and, every few seconds, adds actors when the cluster has grown. Actors
not placed within ``resources.placement_timeout`` seconds are given up; when none was ever
placed, :class:`PlacementError` says what each actor needs and what the cluster has.
"""

from __future__ import annotations

import time

import ray

from doodl.orchestrator.errors import PlacementError
from doodl.orchestrator.spec import ResourcesSpec

GROW_EVERY_S = 5.0  # how often the pool looks for new capacity


def actor_bundle(res: ResourcesSpec) -> dict[str, float]:
    """What one actor holds."""
    bundle = {"CPU": float(res.cpus_per_actor)}
    if res.gpus_per_actor:
        bundle["GPU"] = float(res.gpus_per_actor)
    return bundle


def placeable(res: ResourcesSpec, cluster: dict[str, float]) -> int:
    """How many actors the cluster's resources hold: by GPUs when actors need GPUs (a cluster
    has fewer GPUs than CPUs), else by CPUs."""
    return int(min(cluster.get(k, 0.0) // v for k, v in actor_bundle(res).items()))


def wanted(res: ResourcesSpec, n_units: int) -> int:
    """How many actors the pool would use: ``num_actors``, or one per unit, at most one per unit."""
    return max(1, min(res.num_actors or n_units, n_units))


class ActorPool:
    """Creates, readies and retires actors of one class; the driver hands units to ready ones."""

    def __init__(self, actor_cls, args: tuple, res: ResourcesSpec, n_units: int):
        self.actor_cls, self.args, self.res = actor_cls, args, res
        self.target = wanted(res, n_units)
        self.pending: dict[ray.ObjectRef, tuple[object, float]] = {}  # ping -> (actor, created at)
        self.live: list = []  # every actor not yet killed
        self.max_ready = 0
        self.start_failures = 0  # actors that died before answering their ping
        self._ready_now = 0
        self._last_grow = 0.0
        self._request_capacity()
        self.grow(force=True)

    def _request_capacity(self) -> None:
        """Ask the autoscaler for a bundle per wanted actor (it starts nodes up to its limits)."""
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[actor_bundle(self.res)] * self.target)

    def add(self):
        """A new actor; it joins the pending ones until it answers its ping."""
        actor = self.actor_cls.remote(*self.args)
        self.live.append(actor)
        self.pending[actor.ping.remote()] = (actor, time.monotonic())
        return actor

    def grow(self, force: bool = False) -> None:
        """Add actors up to what the cluster can place now (at least one, to be placed when
        capacity arrives), never beyond the target."""
        if not force and time.monotonic() - self._last_grow < GROW_EVERY_S:
            return
        self._last_grow = time.monotonic()
        fits = max(1, placeable(self.res, ray.cluster_resources()))
        for _ in range(min(self.target, fits) - len(self.live)):
            self.add()

    def became_ready(self, ping: ray.ObjectRef):
        """The actor whose ping answered, now ready (None if it died before answering).

        Actors that keep dying before they start (a store the workers cannot open, a broken
        node image) are replaced up to ``resources.max_retries`` times, then
        :class:`PlacementError` says why: never an endless loop of new actors."""
        actor, _ = self.pending.pop(ping)
        try:
            ray.get(ping)
        except ray.exceptions.RayActorError as exc:
            self.retire(actor)
            self.start_failures += 1
            if self.start_failures > self.res.max_retries:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
                raise PlacementError(f"{self.start_failures} training actors died before they started; the last: "
                                     f"{reason}") from None
            return None
        self._ready_now += 1
        self.max_ready = max(self.max_ready, self._ready_now)
        return actor

    def retire(self, actor, was_ready: bool = False) -> None:
        """Kill an actor and forget it."""
        if was_ready:
            self._ready_now -= 1
        if actor in self.live:
            self.live.remove(actor)
        try:
            ray.kill(actor, no_restart=True)
        except ValueError:  # already gone
            pass

    def give_up_unplaced(self, busy: int) -> None:
        """Retire actors pending longer than the placement timeout; raise
        :class:`PlacementError` when nothing is running and nothing could ever be placed."""
        now = time.monotonic()
        for ping, (actor, created) in list(self.pending.items()):
            if now - created > self.res.placement_timeout:
                del self.pending[ping]
                self.retire(actor)
        if not self.pending and not busy and self._ready_now == 0:
            have = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
            raise PlacementError(
                f"no actor could be placed within {self.res.placement_timeout:g} s: each needs "
                f"{actor_bundle(self.res)}, the cluster has {have or 'nothing'}; lower resources.cpus_per_actor "
                "or resources.gpus_per_actor, or add nodes")

    def shutdown(self) -> None:
        """Kill every actor and withdraw the autoscaler request."""
        for actor in list(self.live):
            self.retire(actor)
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[])
