"""`ovdet serve`: the HTTP API and web page (FastAPI + uvicorn, the `[serve]` extra).

With no arguments it serves the bundled shapes-world models offline on 127.0.0.1:8000.
"""

from __future__ import annotations

import argparse
import time

from ovdet.cli.common import add_cache_args, add_device_arg, text_cache
from ovdet.cli.options import port_number, positive_float, positive_int
from ovdet.errors import OvdetError

DEFAULT_MODELS = ("shapes-vild", "shapes-regionspot", "shapes-ovsam")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="HTTP API and web page (detect, recognize, segment)")
    p.add_argument(
        "--model",
        action="append",
        default=None,
        help="a ViLD, RegionSpot or Open-Vocabulary SAM checkpoint to serve; repeat for several "
        f"(default: {', '.join(DEFAULT_MODELS)})",
    )
    p.add_argument("--clip", default="shapes-clip", help="CLIP for classify and box recognition")
    p.add_argument(
        "--sam",
        default=None,
        help="SAM for segment with ViLD or CLIP (RegionSpot and OV-SAM use their own; default: "
        "a served RegionSpot's SAM, shapes-sam beside a shapes CLIP, else none)",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: this machine only)"
    )
    p.add_argument("--port", type=port_number, default=8000)
    p.add_argument("--workers", type=positive_int, default=1, help="requests run at once")
    p.add_argument(
        "--threads", type=positive_int, default=None, help="torch threads (default: torch's)"
    )
    p.add_argument(
        "--queue", type=positive_int, default=128, help="requests admitted at once; more get 503"
    )
    p.add_argument("--timeout", type=positive_float, default=60.0, help="seconds per request")
    p.add_argument("--max-upload-mb", type=positive_float, default=16.0, help="upload cap")
    p.add_argument("--max-pixels", type=positive_int, default=40_000_000, help="image cap (W x H)")
    p.add_argument(
        "--points-per-side", type=positive_int, default=32, help="RegionSpot detect: SAM's grid"
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        help="allow browser pages from this origin (repeat); CORS is off by default",
    )
    a = p.add_argument_group("access")
    a.add_argument(
        "--api-key",
        action="append",
        default=[],
        help="require this key as 'Authorization: Bearer KEY' on /v1 routes (repeat for several; "
        "also $OVDET_API_KEY, comma-separated)",
    )
    a.add_argument("--api-key-file", action="append", default=[], help="keys, one per line")
    a.add_argument(
        "--insecure",
        action="store_true",
        help="serve without keys on an address other machines reach (refused otherwise)",
    )
    a.add_argument(
        "--rate", type=positive_float, default=None, help="requests/s per client (key or address)"
    )
    a.add_argument("--burst", type=positive_int, default=10, help="a client's burst (with --rate)")
    add_device_arg(p)
    add_cache_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ovdet.serve.app import create_app
    except ImportError as e:
        raise OvdetError(
            f"ovdet serve needs the serve extra ({e.name} is missing): pip install 'ovdet[serve]'"
        ) from None
    from rich.console import Console

    from ovdet.serve.access import ApiKeys, TokenBuckets, check_exposure, read_keys
    from ovdet.serve.limits import Limits
    from ovdet.serve.zoo import Zoo

    keys = read_keys(args.api_key, args.api_key_file)
    check_exposure(args.host, keys, args.insecure)
    buckets = TokenBuckets(args.rate, args.burst) if args.rate else None
    _check_port_free(args.host, args.port)  # before the models load, which takes a while
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    limits = Limits(
        upload_bytes=int(args.max_upload_mb * 2**20),
        pixels=args.max_pixels,
        queue=args.queue,
        workers=args.workers,
        timeout_s=args.timeout,
    )
    console = Console(stderr=True)
    start = time.perf_counter()
    with console.status("loading models"):
        zoo = Zoo.load(
            list(args.model or DEFAULT_MODELS),
            clip=args.clip,
            sam=args.sam,
            device=args.device,
            text_cache=text_cache(args),
            points_per_side=args.points_per_side,
        )
    loaded = time.perf_counter() - start
    app = create_app(
        zoo, limits, tuple(args.cors_origin), ApiKeys(keys), buckets, load_seconds=loaded
    )
    _access_log()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        open_or_not = f"{len(keys)} API key(s) required" if keys else "NO API key (--insecure)"
        console.print(
            f"[yellow]binding {args.host}: reachable from other machines; {open_or_not}[/yellow]"
        )
    console.print(
        f"serving {', '.join(zoo.models)} on http://{args.host}:{args.port}/ (API docs: /docs)"
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _access_log() -> None:
    """One JSON line per request on stderr (logger ovdet.serve.access)."""
    import logging
    import sys

    logger = logging.getLogger("ovdet.serve.access")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _check_port_free(host: str, port: int) -> None:
    """One line, before any model loads, when `host:port` cannot be bound (in use, or an
    address this machine does not have)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise OvdetError(f"--host {host}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as e:
            raise OvdetError(
                f"cannot serve on {host}:{port}: {e.strerror}; choose another --port"
            ) from None
