#!/usr/bin/env python3
"""Profile the webhook in-process (Flask test client, real PostgreSQL/Redis/S3) with pyinstrument.

Run: .venv/bin/python bench/profile_ingest.py [--events 1] [--requests 300] [--html out.html]
Prints the per-request mean and pyinstrument's text report (what the ingest
path spends its time on), then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Services, body, context, setup_tenant  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--html")
    args = ap.parse_args()
    from pyinstrument import Profiler
    with Services() as svc:
        env = svc.env("profile")
        ctx = context(env)
        key = setup_tenant(ctx, "t0")
        from jobico_api import create_app
        app = create_app(ctx=ctx)
        client = app.test_client()
        data = body([{"age": 50, "firstName": "john"}] * args.events)
        hdr = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        for _ in range(30):
            assert client.post("/events/t0/e0", data=data, headers=hdr).status_code == 200
        t = time.perf_counter()
        for _ in range(args.requests):
            client.post("/events/t0/e0", data=data, headers=hdr)
        plain = (time.perf_counter() - t) / args.requests * 1000
        prof = Profiler(interval=0.0005)
        prof.start()
        for _ in range(args.requests):
            client.post("/events/t0/e0", data=data, headers=hdr)
        prof.stop()
        print(f"mean per request ({args.events} events): {plain:.2f} ms")
        print(prof.output_text(unicode=False, color=False, show_all=False))
        if args.html:
            Path(args.html).write_text(prof.output_html())
        print(json.dumps({"bench": "profile_ingest", "events": args.events, "ms_per_request": round(plain, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
