"""Leader election's Lease writes, against a recording fake of gpudra's `KubeClient`.

Both clocks are injected: ``clock`` (local, monotonic) is what expiry and the renew deadline
are judged by; ``wall`` only fills in the informational ``renewTime``/``acquireTime``.  So a
test moves local time and watches what the elector writes, and can set another holder's
``renewTime`` to anything (a skewed clock) without it mattering.
"""

from __future__ import annotations

import threading
from typing import Any

from gpudra.controller.leader import LeaderElector
from gpudra.kube.errors import AlreadyExists, Conflict, ServerError
from gpudra.kube.resources import LEASES
from tests.fakes.kube import FakeKubeClient

NS, NAME = "gpudra", "gpudra-controller"
WALL = 1_780_000_000.0  # 2026-05-28T20:26:40Z
WALL_TEXT = "2026-05-28T20:26:40.000000Z"


class Clock:
    """Local time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def elector(fake: FakeKubeClient, clock: Clock, identity: str = "a") -> LeaderElector:
    return LeaderElector(
        fake,
        name=NAME,
        namespace=NS,
        identity=identity,
        lease_duration_s=15,
        renew_deadline_s=10,
        retry_period_s=2,
        clock=clock,
        wall_clock=lambda: WALL,
    )


def lease(holder: str, renew_time: str = "2020-01-01T00:00:00.000000Z") -> dict[str, Any]:
    return {
        "metadata": {"name": NAME, "namespace": NS, "resourceVersion": "7"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "acquireTime": "2020-01-01T00:00:00.000000Z",
            "renewTime": renew_time,
            "leaseTransitions": 3,
        },
    }


def test_acquires_by_creating_the_lease_when_there_is_none() -> None:
    fake, clock = FakeKubeClient(), Clock()
    e = elector(fake, clock)

    assert e.try_acquire_or_renew()

    (create,) = fake.writes
    assert str(create) == f"create leases {NS}/{NAME}"
    assert create.body["spec"] == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "acquireTime": WALL_TEXT,
        "renewTime": WALL_TEXT,
        "leaseTransitions": 0,
    }
    assert e.leading() and e.transitions == 1


def test_renews_with_the_resource_version_it_read() -> None:
    fake, clock = FakeKubeClient(), Clock()
    e = elector(fake, clock)
    e.try_acquire_or_renew()
    read_rv = fake.stored(LEASES, NAME, NS)["metadata"]["resourceVersion"]
    fake.actions.clear()
    clock.advance(2)

    assert e.try_acquire_or_renew()

    (renew,) = fake.writes
    assert str(renew) == f"replace leases {NS}/{NAME}"
    assert renew.body["metadata"]["resourceVersion"] == read_rv  # optimistic: fails if raced
    assert renew.body["spec"]["holderIdentity"] == "a"
    assert renew.body["spec"]["leaseTransitions"] == 0
    assert e.transitions == 1  # a renewal is no new term


def test_a_lease_another_replica_holds_is_left_alone_while_it_is_fresh() -> None:
    fake, clock = FakeKubeClient(), Clock()
    fake.seed(LEASES, lease("b"))  # renewTime years ago: judged by observation, not by clocks
    e = elector(fake, clock)

    assert not e.try_acquire_or_renew()
    clock.advance(14.9)
    assert not e.try_acquire_or_renew()

    assert fake.writes == []
    assert not e.leading()


def test_takes_over_once_the_lease_went_unchanged_for_the_lease_duration() -> None:
    fake, clock = FakeKubeClient(), Clock()
    fake.seed(LEASES, lease("b"))
    e = elector(fake, clock)
    assert not e.try_acquire_or_renew()  # first seen now
    clock.advance(15)

    assert e.try_acquire_or_renew()

    (take,) = fake.writes
    assert str(take) == f"replace leases {NS}/{NAME}"
    assert take.body["metadata"]["resourceVersion"] == "7"
    assert take.body["spec"] == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "acquireTime": WALL_TEXT,
        "renewTime": WALL_TEXT,
        "leaseTransitions": 4,
    }
    assert e.leading() and e.transitions == 1


def test_a_holder_that_keeps_renewing_is_never_taken_over() -> None:
    fake, clock = FakeKubeClient(), Clock()
    fake.seed(LEASES, lease("b", renew_time="2020-01-01T00:00:00.000000Z"))
    e = elector(fake, clock)
    e.try_acquire_or_renew()
    clock.advance(10)
    fake.seed(LEASES, lease("b", renew_time="2020-01-01T00:00:10.000000Z"))  # b renewed
    e.try_acquire_or_renew()
    clock.advance(10)  # 20 s since first seen, but only 10 s since it last changed

    assert not e.try_acquire_or_renew()
    assert fake.writes == []


def test_losing_the_race_for_an_expired_lease_is_not_leading() -> None:
    fake, clock = FakeKubeClient(), Clock()
    fake.seed(LEASES, lease("b"))
    e = elector(fake, clock)
    e.try_acquire_or_renew()
    clock.advance(15)
    fake.fail_next("replace", LEASES, Conflict("the object has been modified"))

    assert not e.try_acquire_or_renew()
    assert not e.leading() and e.transitions == 0


def test_losing_the_race_to_create_the_lease_is_not_leading() -> None:
    fake, clock = FakeKubeClient(), Clock()
    fake.fail_next("create", LEASES, AlreadyExists("leases already exists"))
    e = elector(fake, clock)

    assert not e.try_acquire_or_renew()
    assert not e.leading()


def test_leading_ends_at_the_renew_deadline_before_anyone_could_take_over() -> None:
    fake, clock = FakeKubeClient(), Clock()
    e = elector(fake, clock)
    e.try_acquire_or_renew()

    clock.advance(9.9)
    assert e.leading()
    clock.advance(0.1)  # renew deadline (10 s) passed; the lease (15 s) has not expired
    assert not e.leading()


def test_release_hands_the_lease_back_and_a_standby_takes_it_at_once() -> None:
    fake, clock = FakeKubeClient(), Clock()
    a, b = elector(fake, clock, "a"), elector(fake, clock, "b")
    a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    fake.actions.clear()

    a.release()

    (release,) = fake.writes
    assert str(release) == f"replace leases {NS}/{NAME}"
    assert release.body["spec"]["holderIdentity"] == ""
    assert release.body["spec"]["leaseDurationSeconds"] == 1
    assert not a.leading()
    assert b.try_acquire_or_renew()  # no waiting for expiry
    assert fake.stored(LEASES, NAME, NS)["spec"]["leaseTransitions"] == 0


def test_release_writes_nothing_unless_this_replica_holds_the_lease() -> None:
    fake, clock = FakeKubeClient(), Clock()
    never = elector(fake, clock, "never")
    never.release()
    assert fake.writes == []

    a = elector(fake, clock, "a")
    a.try_acquire_or_renew()
    fake.seed(LEASES, lease("b"))  # b took it meanwhile (a did not notice yet)
    fake.actions.clear()
    a.release()
    assert fake.writes == []


def test_run_reports_the_loss_once_when_renewals_keep_failing() -> None:
    fake = FakeKubeClient()
    e = LeaderElector(
        fake,
        name=NAME,
        namespace=NS,
        identity="a",
        lease_duration_s=0.3,
        renew_deadline_s=0.2,
        retry_period_s=0.01,
    )
    assert e.try_acquire_or_renew()
    for _ in range(1000):  # every renewal from now on fails
        fake.fail_next("get", LEASES, ServerError("etcd unavailable"))
    lost: list[bool] = []
    stop = threading.Event()

    runner = threading.Thread(target=e.run, args=(stop, lambda: lost.append(True)))
    runner.start()
    runner.join(timeout=10)
    stop.set()

    assert not runner.is_alive()
    assert lost == [True]
    assert not e.leading()
    assert [str(w) for w in fake.writes] == [f"create leases {NS}/{NAME}"]
