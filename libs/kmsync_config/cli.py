"""`kmsync config check [FILE]`: validate a tenants file and print every problem at once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kmsync_config.tenants import ConfigError, load_tenants


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kmsync config")
    sub = parser.add_subparsers(dest="action", required=True)
    check = sub.add_parser("check", help="validate a tenants file")
    check.add_argument("file", type=Path, nargs="?", default=Path("tenants.yaml"))
    check.add_argument("--no-secrets", action="store_true", help="do not require secrets to resolve")
    args = parser.parse_args(argv)
    try:
        cfg = load_tenants(args.file, check_secrets=not args.no_secrets)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.file}: {len(cfg.events)} event(s), {len(cfg.marketo_instances)} Marketo instance(s): OK")
    return 0
