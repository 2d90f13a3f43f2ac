"""A seeded stand-in for real users of online_ab: each new user sends one iris row through
the proxy (X-User-ID), gets a variant, and converts with the probability given for that
variant; the outcome is posted to /outcomes. What a product's own event pipeline would send.

    python -m patterns.online_ab.simulate --url http://127.0.0.1:8000 --users 1000 \\
        --rate-a 0.30 --rate-b 0.40 --seed 1
"""

from __future__ import annotations

import argparse
import json
import sys

import httpx
import numpy as np

ROW = {"instances": [[5.8, 2.7, 4.1, 1.0]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--users", type=int, default=1000, help="1..100000")
    parser.add_argument("--rate-a", type=float, default=0.30)
    parser.add_argument("--rate-b", type=float, default=0.30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 1 <= args.users <= 100_000:
        parser.error("--users must be 1..100000")
    rng = np.random.default_rng(args.seed)
    rates = {"a": args.rate_a, "b": args.rate_b}
    seen = {"a": 0, "b": 0}
    failed = 0
    with httpx.Client(base_url=args.url, timeout=10) as client:
        for i in range(args.users):
            user = f"sim-{args.seed}-{i}"
            resp = client.post("/predict", json=ROW, headers={"X-User-ID": user})
            if resp.status_code != 200:
                failed += 1
                continue
            variant = resp.headers["x-variant"]
            seen[variant] += 1
            value = int(rng.random() < rates[variant])
            out = client.post("/outcomes", json={"user_id": user, "value": value})
            failed += out.status_code != 200
    summary = {"users": args.users, "variants": seen, "failed": failed}
    print(json.dumps(summary, separators=(",", ":")))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
