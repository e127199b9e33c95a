"""Unit tests for the client's pure timers (time is an argument) and for how its batches are cut."""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import pytest

TS_TEXT = "2024-05-06T07:08:09.123+00:00"


@pytest.fixture
def rescans(cliente: ModuleType) -> Any:
    return cliente.RescanSchedule(settle=0.5, max_wait=5.0)


def test_rescan_defaults_come_from_the_constants(cliente: ModuleType) -> None:
    schedule = cliente.RescanSchedule()
    assert (schedule.settle, schedule.max_wait) == (cliente.RESCAN_SETTLE, cliente.RESCAN_MAX_WAIT) == (0.5, 5.0)


def test_nothing_to_rescan_waits_the_whole_interval(rescans: Any) -> None:
    assert not rescans.needed
    assert not rescans.due(100.0)
    assert rescans.wait(100.0, 1.0) == 1.0


def test_a_request_is_due_at_once(rescans: Any) -> None:
    rescans.request()
    assert rescans.needed and rescans.due(100.0)
    assert rescans.wait(100.0, 1.0) == 0.0
    rescans.started()
    assert not rescans.needed and not rescans.due(100.0)
    assert rescans.wait(100.0, 1.0) == 1.0


def test_an_overflow_waits_until_overflows_settle(rescans: Any) -> None:
    assert rescans.overflow(100.0) is True  # the first: worth a warning
    assert rescans.needed
    assert not rescans.due(100.49)
    assert rescans.wait(100.2, 1.0) == pytest.approx(0.3)
    assert rescans.due(100.5)
    assert rescans.overflow(100.4) is False  # the same episode: no second warning
    assert not rescans.due(100.5) and rescans.due(100.9)


def test_overflows_that_never_stop_wait_max_wait_at_most(rescans: Any) -> None:
    now = 100.0
    assert rescans.overflow(now) is True
    while now < 110.0:
        now += 0.25
        assert rescans.overflow(now) is False
        assert rescans.due(now) is (now >= 105.0)
    assert rescans.wait(104.0, 10.0) == 1.0  # until RESCAN_MAX_WAIT after the first overflow
    assert rescans.wait(110.0, 10.0) == 0.0  # past it: rescan now
    assert rescans.due(105.0)


def test_a_rescan_ends_the_episode(rescans: Any) -> None:
    rescans.overflow(100.0)
    rescans.started()
    assert not rescans.needed
    assert rescans.overflow(200.0) is True  # a new episode, measured from its own first overflow
    assert not rescans.due(200.4) and rescans.due(200.5)


def test_an_overflow_after_a_plain_request_still_settles_and_warns(rescans: Any) -> None:
    rescans.request()  # e.g. the view missed a parent directory
    assert rescans.overflow(100.0) is True
    assert not rescans.due(100.1)  # a burst is under way: wait for it to settle
    assert rescans.due(100.5)


def test_a_request_during_an_overflow_does_not_hurry_it(rescans: Any) -> None:
    rescans.overflow(100.0)
    rescans.request()
    assert not rescans.due(100.2) and rescans.due(100.5)


def test_dropped_events_warn_once_per_rescan(rescans: Any) -> None:
    assert rescans.dropped() is True
    assert rescans.needed and rescans.due(0.0)
    assert [rescans.dropped() for _ in range(3)] == [False, False, False]
    rescans.started()
    assert rescans.dropped() is True


def test_checkpoint_first_one_is_due_at_once(cliente: ModuleType) -> None:
    assert cliente.CheckpointSchedule().due(0.0)


def test_checkpoint_backs_off_while_the_tree_moves(cliente: ModuleType) -> None:
    schedule, now = cliente.CheckpointSchedule(), 1000.0
    for wait in [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]:  # doubling from CHECKPOINT_MIN_INTERVAL, capped
        schedule.moved(now)
        assert not schedule.due(now + wait - 0.01) and schedule.due(now + wait)
    schedule.agrees(now)
    assert not schedule.due(now + 4.99) and schedule.due(now + 5.0)  # back to CHECKPOINT_MIN_INTERVAL
    schedule.moved(now)
    assert not schedule.due(now + 9.99) and schedule.due(now + 10.0)


def test_checkpoint_looks_twice_before_sending_differences(cliente: ModuleType) -> None:
    schedule = cliente.CheckpointSchedule()
    assert schedule.differs(10.0) is False  # their events may still be on their way: look again...
    assert not schedule.due(10.99) and schedule.due(11.0)  # ...after CHECKPOINT_SECOND_LOOK
    assert schedule.differs(11.0) is True  # still there: send them
    assert not schedule.due(15.99) and schedule.due(16.0)
    assert schedule.differs(16.0) is False  # a new round looks twice again
    schedule.agrees(17.0)
    assert schedule.differs(30.0) is False  # agreeing ends the round


def test_checkpoint_second_look_survives_a_moving_tree(cliente: ModuleType) -> None:
    schedule = cliente.CheckpointSchedule()
    assert schedule.differs(0.0) is False
    schedule.moved(1.0)
    assert schedule.differs(20.0) is True


def outgoing(cliente: ModuleType, seq: int, size: int) -> Any:
    return cliente.Outgoing(seq, f"/w/{seq}", "x" * size)


def test_split_batches(cliente: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cliente, "BATCH_MAX_EVENTS", 3)
    monkeypatch.setattr(cliente, "BATCH_MAX_BYTES", 10)
    assert list(cliente.split_batches([])) == []
    sizes = [4, 4, 4, 20, 1, 1, 1, 1, 1, 1, 1]
    batches = list(cliente.split_batches([outgoing(cliente, i, size) for i, size in enumerate(sizes, 1)]))
    assert [[item.seq for item in batch] for batch in batches] == [[1, 2], [3], [4], [5, 6, 7], [8, 9, 10], [11]]


def test_outbox_next_batch_waits_for_an_event(cliente: ModuleType) -> None:
    async def scenario() -> None:
        box = cliente.Outbox()
        waiting = asyncio.create_task(box.next_batch())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiting.done()
        assert box.add(cliente.Change("created", "/w/a", False), TS_TEXT)
        assert [item.seq for item in await asyncio.wait_for(waiting, 5)] == [1]
        assert box.waiting() == 0 and box.pending() == 1

    asyncio.run(scenario())


# ---------------------------------------------------------------------------
# Verification: where the proof of the server's tree stands (pure).
# ---------------------------------------------------------------------------


def _reply(cliente: ModuleType, kind: str, seq: int = 5, count: int = 2) -> Any:
    return cliente.ServerMessage(kind, seq, 2, count, 0)


def test_verification_digest_then_verified(cliente: ModuleType) -> None:
    proof = cliente.Verification()
    assert not proof.digest_due()
    proof.want()
    assert proof.digest_due() and not proof.manifest_due() and not proof.holding()
    proof.digest_sent(5, 2)
    assert not proof.digest_due()  # one digest in flight at a time
    proof.answered(_reply(cliente, "verified"), now=10.0)
    assert not proof.digest_due() and not proof.manifest_due() and not proof.holding()


def test_verification_resync_holds_events_until_the_manifest_is_verified(cliente: ModuleType) -> None:
    proof = cliente.Verification()
    proof.want()
    proof.digest_sent(5, 2)
    proof.answered(_reply(cliente, "resync", count=7), now=10.0)
    assert proof.manifest_due() and not proof.holding()
    proof.manifest_sent(5, 2, now=11.0)
    assert proof.holding() and not proof.manifest_due()
    with pytest.raises(cliente.ProtocolError):
        proof.answered(_reply(cliente, "resync"), now=12.0)  # a manifest is answered by "verified" only


def test_verification_answer_nobody_asked_for_is_a_protocol_error(cliente: ModuleType) -> None:
    with pytest.raises(cliente.ProtocolError):
        cliente.Verification().answered(_reply(cliente, "verified"), now=1.0)


def test_verification_interrupted_asks_again_on_the_next_connection(cliente: ModuleType) -> None:
    proof = cliente.Verification()
    proof.want()
    proof.digest_sent(5, 2)
    proof.interrupted()
    assert proof.digest_due() and not proof.holding()
    proof.digest_sent(6, 2)
    proof.answered(_reply(cliente, "resync"), now=1.0)
    proof.manifest_sent(6, 2, now=2.0)
    proof.interrupted()
    assert proof.digest_due() and not proof.holding() and not proof.manifest_due()
