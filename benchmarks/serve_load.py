"""Load on `photoclass serve`: N requests from C concurrent clients on loopback, some malformed.

    python benchmarks/serve_load.py RUN [--requests 500] [--clients 16] [--bad 0.1]

Starts the real server on a free local port, sends weather test photos (and 10% bad uploads:
text, truncated JPEG, empty), and prints latency percentiles for the good requests, the
status counts, and how many requests got no answer. Target (2 cores): zero 5xx, zero dropped,
p50 <= 60 ms and p99 <= 250 ms for good requests.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

WEATHER = Path(__file__).resolve().parents[2] / "shared" / "data" / "weather"


def multipart(content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def send(url: str, content: bytes) -> tuple[int, float]:
    body, content_type = multipart(content)
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = 0  # no answer: dropped
    return status, (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", type=Path, default=WEATHER)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--bad", type=float, default=0.1)
    args = parser.parse_args()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "photoclass.cli", "serve", str(args.run), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        split = args.run / "split.csv"
        names = [r["path"] for r in csv.DictReader(open(split)) if r["split"] == "test"] if split.is_file() else []
        photos = [(args.data / n).read_bytes() for n in names] or [
            p.read_bytes() for p in sorted(args.data.glob("*.jpg"))[:100]
        ]
        rng = random.Random(0)
        good = photos[0]
        bad_uploads = [b"not a photo", good[: len(good) // 3], b""]
        plan = [
            (False, rng.choice(photos)) if rng.random() >= args.bad else (True, rng.choice(bad_uploads))
            for _ in range(args.requests)
        ]
        send(f"{base}/predict", good)  # warm-up
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(lambda item: (item[0], *send(f"{base}/predict", item[1])), plan))
        seconds = time.perf_counter() - started
        health = json.loads(urllib.request.urlopen(f"{base}/health", timeout=5).read())
        engine = json.loads(urllib.request.urlopen(f"{base}/model", timeout=5).read())["engine"]
    finally:
        server.terminate()
        server.wait(timeout=10)
    statuses = Counter(status for _, status, _ in results)
    latencies = sorted(ms for bad, status, ms in results if not bad and status == 200)
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")  # noqa: E731
    print(
        f"{args.requests} requests from {args.clients} clients in {seconds:.1f} s "
        f"({args.requests / seconds:.1f} requests/s); statuses {dict(sorted(statuses.items()))}"
    )
    print(
        f"5xx: {sum(v for k, v in statuses.items() if k >= 500)}, dropped: {statuses.get(0, 0)}; "
        f"engine {engine}, mean batch of the last 100 model calls {health['mean_batch']}"
    )
    print(
        f"good requests: {len(latencies)}, p50 {p(0.5):.0f} ms, p90 {p(0.9):.0f} ms, p99 {p(0.99):.0f} ms, "
        f"mean {statistics.mean(latencies) if latencies else float('nan'):.0f} ms"
    )


if __name__ == "__main__":
    main()
