"""The bounded inference queue: 503 with Retry-After when full, 504 past the time limit, and a
slot held until its work has really finished."""

from __future__ import annotations

import asyncio
import threading

import pytest

pytest.importorskip("fastapi")

from ovdet.serve.jobs import JobQueue  # noqa: E402
from ovdet.serve.limits import Limits, RequestError  # noqa: E402


def test_full_queue_answers_503_with_retry_after_then_admits_again():
    async def scenario():
        queue = JobQueue(Limits(queue=1, workers=1, timeout_s=30))
        release = threading.Event()
        first = asyncio.ensure_future(queue.run(release.wait))
        await asyncio.sleep(0.05)
        with pytest.raises(RequestError) as e:
            await queue.run(lambda: 1)
        assert e.value.status == 503 and int(e.value.headers["Retry-After"]) >= 1
        release.set()
        assert await first is True
        assert await queue.run(lambda: 2) == 2
        assert queue.pending == 0 and queue.done == 2
        queue.close()

    asyncio.run(scenario())


def test_time_limit_answers_504_and_keeps_the_slot_until_the_work_ends():
    async def scenario():
        queue = JobQueue(Limits(queue=1, workers=1, timeout_s=0.1))
        release = threading.Event()
        with pytest.raises(RequestError) as e:
            await queue.run(release.wait)
        assert e.value.status == 504
        assert queue.pending == 1  # the thread still runs: its slot is not given away
        with pytest.raises(RequestError) as busy:
            await queue.run(lambda: 1)
        assert busy.value.status == 503
        release.set()
        for _ in range(100):
            if queue.pending == 0:
                break
            await asyncio.sleep(0.01)
        assert queue.pending == 0
        assert await queue.run(lambda: 3) == 3
        queue.close()

    asyncio.run(scenario())


def test_work_runs_in_inference_mode_off_the_event_loop():
    import torch

    async def scenario():
        queue = JobQueue(Limits())
        loop_thread = threading.get_ident()
        where, inference = await queue.run(
            lambda: (threading.get_ident(), torch.is_inference_mode_enabled())
        )
        assert where != loop_thread and inference
        queue.close()

    asyncio.run(scenario())
