"""What the collector knows: execute slots (the supply side of the autoscaler) and daemon ads.

The process's HTCondor configuration decides which pool is asked and how to authenticate; for
the project's own pool set ``CONDOR_CONFIG`` from :func:`smartcache.condor.pool.pool_env` (or use
:func:`smartcache.condor.pool.use_pool_config`) before calling these.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from smartcache.catalog.config import CondorConfig
from smartcache.catalog.errors import SmartcacheError

SLOT_ATTRS = ["Name", "Machine", "State", "Activity", "Cpus", "Memory", "TotalSlotCpus",
              "PartitionableSlot", "DynamicSlot", "SmartcacheElastic", "SmartcacheWorker",
              "ChildCpus", "NumDynamicSlots", "RemoteOwner", "JobId"]


class CollectorError(SmartcacheError):
    """The collector could not be reached or answered nonsense."""


@dataclass(frozen=True)
class Slot:
    """One execute slot as the collector advertises it.

    For a partitionable slot ``cpus``/``memory_mb`` are what is still free to carve out; its
    dynamic children appear as their own (claimed) slots.
    """

    name: str
    machine: str
    state: str                  # Unclaimed, Claimed, Matched, Preempting, Drained, Owner ...
    activity: str               # Idle, Busy, Retiring, Vacating, ...
    cpus: int
    memory_mb: int
    partitionable: bool = False
    dynamic: bool = False
    elastic: bool = False       # advertised by an autoscaler worker (SmartcacheElastic = True)
    worker: str | None = None   # the worker's name (SmartcacheWorker), None for the base startd

    @property
    def busy(self) -> bool:
        """A slot running (or about to run) a job: a worker holding one must not be removed."""
        return self.state in ("Claimed", "Matched", "Preempting")

    @property
    def free_cpus(self) -> int:
        """CPUs a new job could get here now."""
        if self.partitionable:
            return self.cpus
        return self.cpus if self.state == "Unclaimed" else 0

    @property
    def free_memory_mb(self) -> int:
        if self.partitionable:
            return self.memory_mb
        return self.memory_mb if self.state == "Unclaimed" else 0


@dataclass(frozen=True)
class DaemonAds:
    """Names of the daemons the collector knows, by kind."""

    masters: tuple[str, ...]
    schedds: tuple[str, ...]
    startds: tuple[str, ...]    # one per startd (slot names without the "slotN@" part)
    negotiators: tuple[str, ...]


def _collector(config: CondorConfig | None):
    import htcondor2
    try:
        if config is not None and config.collector:
            return htcondor2.Collector(config.collector)
        return htcondor2.Collector()
    except htcondor2.HTCondorException as e:
        raise CollectorError(f"no HTCondor collector configured: {e}") from e


def _query(config: CondorConfig | None, ad_type_name: str, constraint: str, projection: list[str]) -> list:
    import htcondor2
    ad_type = getattr(htcondor2.AdType, ad_type_name)
    try:
        return _collector(config).query(ad_type, constraint=constraint, projection=projection)
    except htcondor2.HTCondorException:
        # After a collector restart the first query fails on the cached security session, which
        # that failure drops: a second attempt negotiates a new one.
        time.sleep(0.2)
    try:
        return _collector(config).query(ad_type, constraint=constraint, projection=projection)
    except htcondor2.HTCondorException as e:
        raise CollectorError(f"collector query failed: {e}") from e


def slot_from_ad(ad) -> Slot:
    """Turn a startd ad (a ClassAd or a plain mapping) into a :class:`Slot`."""
    get = ad.get
    worker = get("SmartcacheWorker")
    return Slot(
        name=str(get("Name", "")),
        machine=str(get("Machine", "")),
        state=str(get("State", "Unknown")),
        activity=str(get("Activity", "Unknown")),
        cpus=int(get("Cpus", 0) or 0),
        memory_mb=int(get("Memory", 0) or 0),
        partitionable=bool(get("PartitionableSlot", False)),
        dynamic=bool(get("DynamicSlot", False)),
        elastic=get("SmartcacheElastic", False) is True,
        worker=str(worker) if worker else None,
    )


def query_slots(config: CondorConfig | None = None, constraint: str = "true") -> list[Slot]:
    """All execute slots matching ``constraint`` (a ClassAd expression), sorted by name."""
    ads = _query(config, "Startd", constraint, SLOT_ATTRS)
    return sorted((slot_from_ad(ad) for ad in ads), key=lambda s: s.name)


def query_daemons(config: CondorConfig | None = None) -> DaemonAds:
    """Which masters, schedds, startds and negotiators have advertised themselves."""
    ads = _query(config, "Any", "true", ["MyType", "Name", "Machine"])
    by_type: dict[str, set[str]] = {}
    for ad in ads:
        kind = str(ad.get("MyType", ""))
        name = str(ad.get("Name", ""))
        if kind == "Machine":   # slot1@w1@host -> w1@host: one entry per startd, not per slot
            name = name.split("@", 1)[-1]
        by_type.setdefault(kind, set()).add(name)
    pick = lambda kind: tuple(sorted(by_type.get(kind, ())))  # noqa: E731
    return DaemonAds(masters=pick("DaemonMaster"), schedds=pick("Scheduler"),
                     startds=pick("Machine"), negotiators=pick("Negotiator"))


def pool_is_ready(config: CondorConfig | None = None) -> bool:
    """True once at least one startd and one schedd have reported to the collector."""
    try:
        ads = query_daemons(config)
    except CollectorError:
        return False
    return bool(ads.startds and ads.schedds)
