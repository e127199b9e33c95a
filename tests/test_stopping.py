"""Stopping: a stop that coincides with a wake-up (CPython gh-86296), during start-up, against a frozen server."""

from __future__ import annotations

import asyncio
import traceback
from pathlib import Path
from types import ModuleType

import pytest
from support import LOOPBACK, TIMEOUT, free_port


@pytest.mark.parametrize("steps", range(6))
def test_stop_that_coincides_with_a_wake_up_still_stops(
    cliente: ModuleType, watched: Path, tmp_path: Path, steps: int
) -> None:
    """A stop (what SIGINT/SIGTERM's handler does) in the same loop iteration as a wake-up of the supervisor.

    asyncio.wait_for before Python 3.12 drops a cancellation that arrives once the awaited
    future is done but before the waiting task resumes (CPython gh-86296): a supervisor that
    waited with it ignored run()'s cancel and looped forever, and the client never stopped
    (issue 9; with wait_for this test fails for steps 0, 1 and 2). ``steps`` loop iterations
    between the stop and the wake-up put the cancel into that window for one of the cases,
    whatever the exact number of iterations each side needs.

    asyncio.timeout (what Supervisor.run uses) is immune: it wraps no inner task, so the cancel
    reaches the supervisor's own task; with the wake-up's future already done, Task.cancel()
    marks the task and its next step throws CancelledError into the coroutine, which
    Timeout.__aexit__ lets through (its timer did not fire; had it fired in the same iteration,
    uncancel() would leave a count above the one at entry and it would still not turn the
    cancel into a TimeoutError).
    """
    settings = cliente.Settings(
        uri=f"ws://{LOOPBACK}:{free_port()}",  # nothing listens: the client retries meanwhile
        root=str(watched),
        name="cli",
        quiet=True,
        state_file=str(tmp_path / "estado.json"),
    )

    async def scenario() -> None:
        client = cliente.MonitorClient(settings)
        stop = asyncio.Event()
        run = asyncio.create_task(client.run(stop))

        def supervising() -> bool:
            return any(task.get_coro().__qualname__ == "Supervisor.run" for task in asyncio.all_tasks())  # type: ignore[union-attr]

        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while not supervising() and not run.done():
            assert asyncio.get_running_loop().time() < deadline, "the supervisor never started"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)  # the supervisor is parked waiting for a wake-up (poll, not a timing guess)
        stop.set()
        for _ in range(steps):
            await asyncio.sleep(0)
        client.wake.set()  # e.g. the server's last ack arrives together with the signal
        done, _ = await asyncio.wait({run}, timeout=TIMEOUT)
        if not done:
            stacks = "".join(
                f"--- {task.get_name()}\n" + "".join(traceback.format_stack(task.get_stack()[-1]))
                for task in asyncio.all_tasks()
                if task is not asyncio.current_task() and task.get_stack()
            )
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            pytest.fail(f"run() did not return within {TIMEOUT:g} s of the stop\n{stacks}")
        run.result()

    asyncio.run(scenario())
