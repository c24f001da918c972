"""`kmsync config check [--tenants FILE] [--no-secrets]`: validate a tenants file, every problem at once.

Exit codes as in every `kmsync` command: 0 valid, 2 a configuration error (each problem on its own line).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kmsync_config.tenants import ConfigError, load_tenants

DEFAULT_TENANTS = Path("tenants.yaml")
EXIT_OK, EXIT_CONFIG = 0, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kmsync config", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    check = sub.add_parser("check", help="validate a tenants file")
    check.add_argument("--tenants", type=Path, default=None,
                       help=f"the tenants file to check (default {DEFAULT_TENANTS})")
    # `kmsync config check FILE`, as the README has always shown it; --tenants is the spelling every
    # other command uses.
    check.add_argument("file", type=Path, nargs="?", default=None,
                       help="the tenants file, given without --tenants")
    check.add_argument("--no-secrets", action="store_true",
                       help="do not require the secrets the file refers to to resolve (default: they must)")
    return parser


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.tenants is not None and args.file is not None and args.tenants != args.file:
        parser.error(f"two tenants files given ({args.file} and --tenants {args.tenants}); give one")
    path: Path = args.tenants or args.file or DEFAULT_TENANTS
    try:
        cfg = load_tenants(path, check_secrets=not args.no_secrets)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    print(f"{path}: {len(cfg.events)} event(s), {len(cfg.marketo_instances)} Marketo instance(s): OK")
    return EXIT_OK
