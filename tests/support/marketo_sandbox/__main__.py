"""``marketo-sandbox --host H --port P [--preset kaltura] [--faults FILE] [--seed N] [--instances FILE] [--shape S]``"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys

from pydantic import ValidationError

from .clock import Clock, ManualClock, SystemClock
from .config import FaultConfig, load_document, load_faults, load_instances
from .server import build_sandbox
from .shape import BUILTIN_SHAPES, InstanceShape, apply_shape
from .testing import start_server


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="marketo-sandbox", description="A local Adobe Marketo Engage API stand-in.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8780, help="0 picks a free port (printed on start)")
    p.add_argument("--preset", choices=["kaltura", "empty"], default="empty")
    p.add_argument("--faults", help="YAML/JSON fault plan (see README)")
    p.add_argument("--seed", type=int, default=0, help="seed for faults, requestIds, GUIDs and tokens")
    p.add_argument("--instances", help="YAML/JSON list of instances (munchkin ids, credentials, limits)")
    p.add_argument("--shape", help="after start, build what an admin makes in the UI on the default instance: "
                                    "a YAML/JSON shape file (README) or the built-in 'kaltura-partial'")
    p.add_argument("--manual-clock", action="store_true",
                   help="start a clock that only moves through POST /_sandbox/clock")
    return p


def _load_shape(spec: str) -> InstanceShape:
    if spec in BUILTIN_SHAPES:
        return BUILTIN_SHAPES[spec]()
    return InstanceShape.model_validate(load_document(spec) or {})


async def _serve(host: str, port: int, preset: str, faults: FaultConfig, seed: int, instances_file: str | None,
                 clock: Clock, shape: InstanceShape | None = None) -> None:
    instances = load_instances(instances_file) if instances_file else None
    sandbox = build_sandbox(preset=preset, seed=seed, faults=faults, instances=instances, clock=clock)
    if shape is not None:
        made = apply_shape(sandbox.default, shape, clock.time())
        print(f"marketo-sandbox: shaped {sandbox.default.munchkin_id}: {made}", flush=True)
    runner, bound = await start_server(sandbox, host, port)
    for inst in sandbox.instances.values():
        prefix = "" if inst is sandbox.default else f"/{inst.munchkin_id}"
        print(f"marketo-sandbox: instance {inst.munchkin_id} at http://{host}:{bound}{prefix} "
              f"(also /{inst.munchkin_id}); client_id={inst.config.clients[0].client_id}", flush=True)
    print(f"marketo-sandbox: listening on http://{host}:{bound} (admin: /_sandbox/)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


#: Middle collections before a full one (Python's: 10). The sandbox keeps every lead, record and activity it is sent
#: in memory, so Python's schedule ran ever longer full collections over objects that live as long as it does
#: (17 % of its CPU in a capacity run of `kmsync bench`, by `perf`); the services run the same schedule
#: (docs/decisions.md, "The cyclic garbage collector's schedule").
FULL_COLLECTION_THRESHOLD = 1000


def main() -> int:
    args = _parser().parse_args(sys.argv[1:])
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_THRESHOLD)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        faults = load_faults(args.faults) if args.faults else FaultConfig()
        clock: Clock = ManualClock() if args.manual_clock else SystemClock()
        shape = _load_shape(args.shape) if args.shape else None
        asyncio.run(_serve(args.host, args.port, args.preset, faults, args.seed, args.instances, clock, shape))
    except (ValidationError, ValueError, OSError) as e:
        print(f"marketo-sandbox: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
