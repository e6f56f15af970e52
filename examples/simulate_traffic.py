"""Simulated editor traffic against a running gateway, to watch a rollout decide (README, "Deployments and
canary rollouts").

Each simulated user has a stable id (sent as X-ForgePilot-User, so the canary's share is sticky per user), asks for
completions in a small file, and accepts what it is shown at the rate given for the deployment that answered: a
canary that users accept less is a worse canary, and the rollout's acceptance guard should roll it back.

    python examples/simulate_traffic.py --url http://127.0.0.1:8765 --accept champion=0.35,canary=0.05
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
from collections import Counter

import httpx

FILES = [
    "def add(a, b):\n    ",
    "def area(width, height):\n    ",
    "def is_even(n):\n    ",
    "def greet(name):\n    ",
    "def clamp(value, low, high):\n    ",
]


async def user_session(
    client: httpx.AsyncClient, user: str, rng: random.Random, accept: dict[str, float], seen: Counter[str]
) -> None:
    text = rng.choice(FILES)
    body = {"text": text, "path": f"{user}/util.py", "cursor": {"offset": len(text)}, "cache": False}
    r = await client.post("/v1/assist/complete", json=body, headers={"X-ForgePilot-User": user})
    if r.status_code != 200:
        seen[f"error {r.status_code}"] += 1
        return
    answer = r.json()
    deployment = answer.get("deployment", "?")
    seen[deployment] += 1
    events = [{"type": "shown", "completion_id": answer["id"], "shown_chars": len(answer["text"])}]
    if rng.random() < accept.get(deployment, 0.3):
        events.append({"type": "accepted", "completion_id": answer["id"], "accepted_chars": len(answer["text"])})
    else:
        events.append({"type": "rejected", "completion_id": answer["id"]})
    await client.post("/v1/events", json={"events": events})


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8765")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--accept", default="champion=0.35,canary=0.05", help="acceptance rate per deployment")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    accept = {k: float(v) for k, v in (pair.split("=") for pair in args.accept.split(","))}
    key = os.environ.get("FORGEPILOT_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    rng = random.Random(args.seed)
    seen: Counter[str] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(args.requests):
        queue.put_nowait(i)
    async with httpx.AsyncClient(base_url=args.url, headers=headers, timeout=120) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                await user_session(client, f"user-{rng.randrange(args.users)}", rng, accept, seen)
                if i % 50 == 49:
                    health = (await client.get("/healthz")).json()
                    split = ", ".join(f"{d['alias']} {d['share']:.0%}" for d in health.get("deployments", []))
                    print(f"{i + 1} requests: served {dict(seen)}; split now: {split}", flush=True)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    print(f"done: {dict(seen)}")


if __name__ == "__main__":
    asyncio.run(main())
