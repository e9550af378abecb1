"""`ovdet serve` under load: concurrent clients, latency percentiles, throughput, server memory.

Starts `ovdet serve --model MODEL` (bundled shapes-world models by default) on a free local
port, warms it up, then sends `--requests` detections of the demo scene from `--clients`
concurrent connections, `--rounds` times. Prints errors (must be 0), requests shed with 503
(retried), p50/p95/p99 latency and throughput per round, and the server's resident set after
warm-up and after each round: a leak shows as growth per request.

    python benchmarks/serve_load.py [--clients 100] [--requests 1000] [--rounds 2]
        [--model shapes-vild]
"""

from __future__ import annotations

import argparse
import json
import urllib.request

from ovdet.serve.load import run_load
from ovdet.serve.local import LocalServer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--requests", type=int, default=1000, help="detections per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--model", default="shapes-vild")
    p.add_argument("--queue", type=int, default=128, help="the server's --queue")
    p.add_argument("--workers", type=int, default=1, help="the server's --workers")
    p.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    p.add_argument("--warmup", type=int, default=20)
    args = p.parse_args()

    server_args = ["--model", args.model, "--queue", str(args.queue)]
    server_args += ["--workers", str(args.workers), "--threads", str(args.threads)]
    with LocalServer(server_args) as server:
        image = urllib.request.urlopen(f"{server.url}/v1/demo.png").read()
        vocab = json.load(urllib.request.urlopen(f"{server.url}/v1/demo"))["vocabulary"]
        warm = run_load(server.url, image, vocab, 4, args.warmup, args.model)
        assert not warm.errors, warm.errors[:3]
        memory = [("after warm-up", server.memory_kib())]
        rounds = []
        for k in range(1, args.rounds + 1):
            report = run_load(server.url, image, vocab, args.clients, args.requests, args.model)
            rounds.append(report.summary())
            memory.append((f"after round {k}", server.memory_kib()))
            for line in report.errors[:5]:
                print("error:", line)
    print(f"ovdet serve {' '.join(server_args)}")
    for k, row in enumerate(rounds, 1):
        print(f"round {k}: " + ", ".join(f"{key} {value}" for key, value in row.items()))
    for label, m in memory:
        print(f"server RSS {label}: {m['VmRSS'] / 1024:.0f} MiB (peak {m['VmHWM'] / 1024:.0f} MiB)")
    if args.rounds >= 2:  # round 1 fills the kept-results store (512 answers); then flat
        growth = (memory[-1][1]["VmRSS"] - memory[1][1]["VmRSS"]) * 1024
        per = growth / (args.requests * (args.rounds - 1))
        print(f"RSS growth after round 1: {per:+.0f} bytes per request")


if __name__ == "__main__":
    main()
