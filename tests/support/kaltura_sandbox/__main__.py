"""``kaltura-sandbox --host H --port P [--scenario FILE] [--seed N] [--speed X]
[--notify-url URL --notify-secret S]``: serve a played Kaltura virtual event over HTTP."""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from kaltura_sandbox.app import build_app
from kaltura_sandbox.config import ScenarioConfig, ScenarioFileError, load_scenario_file
from kaltura_sandbox.sandbox import Sandbox


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kaltura-sandbox", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8091)
    p.add_argument("--scenario", help="YAML file of scenario overrides (see README)")
    p.add_argument("--seed", type=int, default=0, help="scenario seed (same seed, same event)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="scenario seconds per real second (0 = paused; step via /_sandbox/advance)")
    p.add_argument("--notify-url", help="where to POST Kaltura HTTP notifications")
    p.add_argument("--notify-secret", help="signing secret (default: the partner admin secret)")
    return p


def main() -> None:
    args = _parser().parse_args(sys.argv[1:])
    if args.speed < 0:
        raise SystemExit("--speed must be >= 0")
    try:
        config = load_scenario_file(args.scenario) if args.scenario else ScenarioConfig()
    except ScenarioFileError as exc:
        raise SystemExit(f"kaltura-sandbox: {exc}") from exc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sandbox = Sandbox(config, seed=args.seed, speed=args.speed, notify_url=args.notify_url,
                      notify_secret=args.notify_secret)
    logging.getLogger("kaltura_sandbox").info(
        "partner %s, virtual event %s, %d registrants, %d sessions; scenario %s → %s at %s×",
        sandbox.partner_id, config.virtual_event_id, len(sandbox.scenario.registrants),
        len(sandbox.scenario.sessions), sandbox.scenario.origin.isoformat(),
        sandbox.scenario.end.isoformat(), args.speed,
    )
    # No access log: report serve URLs carry a KS in their query string.
    web.run_app(build_app(sandbox), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
