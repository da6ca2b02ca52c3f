"""The same load from Python's aiohttp (the transport of the Fireworks Python SDK).

usage: aiohttp_client.py BASE_URL API_KEY MODEL REQUESTS CONCURRENCY [plain|stream]
prints: requests wall_s cpu_s errors

stream: the body asks for SSE (with perf_metrics_in_response, as the SDK's
async_completions_stream does) and each event's JSON is decoded, as the SDK does.
"""
import json
import asyncio
import sys
import time

import aiohttp


async def main(base, key, model, requests, concurrency, stream):
    url = base + "/inference/v1/completions"
    headers = {"Authorization": "Bearer " + key, "X-Api-Key": key}
    body = {"model": model, "prompt": [1, 2], "n": 1, "max_tokens": 1, "temperature": 1.0,
            "top_p": 1.0, "top_k": 0, "raw_output": True, "stream": stream}
    if stream:
        body["perf_metrics_in_response"] = True
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async def one():
            nonlocal errors
            async with session.post(url, json=body) as r:
                if not stream:
                    data = await r.json()
                    if r.status != 200 or not data.get("choices"):
                        errors += 1
                    return
                done = False
                async for line in r.content:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        break
                    json.loads(data)
                if r.status != 200 or not done:
                    errors += 1

        async def worker(count):
            for _ in range(count):
                await one()

        await asyncio.gather(*[worker(1) for _ in range(concurrency)])  # warm up
        per = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]
        c0, t0 = time.process_time(), time.monotonic()
        await asyncio.gather(*[worker(n) for n in per])
        wall, cpu = time.monotonic() - t0, time.process_time() - c0
    print(f"{requests} {wall:.4f} {cpu:.4f} {errors}")


if __name__ == "__main__":
    b, k, m, n, c = sys.argv[1:6]
    asyncio.run(main(b, k, m, int(n), int(c), len(sys.argv) > 6 and sys.argv[6] == "stream"))
