"""The load generator of bench/ack.py, in a process of its own: it fires the requests it is
given at once and times each one.

Slack sends its requests from its own machines. Fired from the bench's process, the requests
shared a GIL with the Slack stand-in and the Motion sandbox, which answer the app's own calls
during a burst (its cards, its creates), so the times counted the bench's threads as well as
the app. Here nothing else runs beside the client.

    python bench/_fire.py < requests.json   # {"url": ..., "requests": [[body, headers], ...]}

prints `[[status, seconds], ...]`, one per request, in order.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def fire(url: str, requests: list[tuple[str, dict[str, str]]]) -> list[tuple[int, float]]:
    # aiohttp rather than httpx as the load generator: httpx degrades with many requests in
    # flight (reliability.md), which would measure the client instead of the app.
    connector = aiohttp.TCPConnector(limit=len(requests), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as client:
        start = asyncio.Event()

        async def one(body: str, headers: dict[str, str]) -> tuple[int, float]:
            await start.wait()
            began = time.perf_counter()
            async with client.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status, time.perf_counter() - began

        tasks = [asyncio.create_task(one(body, headers)) for body, headers in requests]
        await asyncio.sleep(0.2)  # every request is waiting at the gate
        start.set()
        return await asyncio.gather(*tasks)


def main() -> None:
    order = json.load(sys.stdin)
    results = asyncio.run(fire(order["url"], [tuple(r) for r in order["requests"]]))
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
