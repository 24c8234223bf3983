"""`worldmodels play`: how many frames a second the server answers, over HTTP as the page asks for them
(one request a frame, each waiting for the last), with the shipped Doom agent.

    python benchmarks/play_fps.py [--frames 400] [--pretrained doom]

Rows: the dream driven by a held key, the dream driven by C, the real env driven by C (its frame and V's
reconstruction). The page asks for 20 frames a second; a row above 20 keeps up.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=400, help="Frames asked for in each row.")
    ap.add_argument("--pretrained", default="doom", help="Shipped or exported agent to serve.")
    args = ap.parse_args()
    proc = subprocess.Popen(
        [sys.executable, "-m", "worldmodels.cli", "play", "--pretrained", args.pretrained,
         "--port", "0", "--no-browser"], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = re.search(r"http://[\d.]+:\d+", proc.stdout.readline()).group(0)  # type: ignore[union-attr]

    def post(path: str, body: dict) -> dict:
        req = urllib.request.Request(url + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    try:
        sid = post("/api/new", {})["id"]
        rows = {}
        for name, where, driver, keys in (("dream, a key held", "dream", "you", ["ArrowLeft"]),
                                          ("dream, C drives", "dream", "agent", []),
                                          ("real env, C drives", "real", "agent", [])):  # fmt: skip
            post("/api/reset", {"id": sid, "where": where, "driver": driver, "seed": 1})
            n, t0 = 0, time.perf_counter()
            while n < args.frames:
                if post("/api/step", {"id": sid, "keys": keys})["done"]:
                    post("/api/reset", {"id": sid})
                n += 1
            rows[name] = round(n / (time.perf_counter() - t0), 1)
    finally:
        proc.send_signal(signal.SIGINT)  # a clean stop: the server closes its real envs
        proc.wait()
    report("play_fps", {"agent": args.pretrained, "frames_per_row": args.frames,
                        "frames_per_s": rows})  # fmt: skip


if __name__ == "__main__":
    main()
