"""The mailbox: results posted from another thread arrive on the event loop, in order, with few wake-ups."""

from __future__ import annotations

import asyncio
import threading

from jax_llm.serving.api.mailbox import Mailbox


def test_posts_from_a_thread_arrive_in_order_and_share_one_wake_up():
    async def run() -> tuple[list[int], int]:
        loop = asyncio.get_running_loop()
        mailbox, received, all_in = Mailbox(loop), [], asyncio.Event()
        wake_ups = 0
        original = loop.call_soon_threadsafe

        def counting(callback, *args):
            nonlocal wake_ups
            wake_ups += 1
            return original(callback, *args)

        loop.call_soon_threadsafe = counting

        def take(item: int) -> None:
            received.append(item)
            if len(received) == 10_000:
                all_in.set()

        producer = threading.Thread(target=lambda: [mailbox.post(take, i) for i in range(10_000)])
        producer.start()
        producer.join()  # blocks the loop: every post lands while the first wake-up is still pending
        await asyncio.wait_for(all_in.wait(), timeout=30)
        mailbox.post(take, 10_000)  # the loop is idle again: a new post wakes it again
        await asyncio.sleep(0.01)
        return received, wake_ups

    received, wake_ups = asyncio.run(run())
    assert received == list(range(10_001))
    assert wake_ups == 2
