"""`kmsync backfill FILE`: load a Kaltura report CSV export into the topics, with a progress bar.

Good rows are produced (acks=all); bad rows are printed with their line numbers and dead-lettered
to ingest.dlq.v1. By default the file is read a line at a time and produced straight to Kafka
(needs the broker); with --url it is uploaded to a running ingest's POST /ingest/kaltura/reports
with the bearer token from --token-file or the environment variable KMSYNC_INGEST_TOKEN.
Exit status: 0 all rows loaded, 1 loaded with bad rows, 2 unusable input or configuration (or the
upload refused), 3 Kafka (or ingest) unavailable (a DependencyUnavailable, mapped by `kmsync` itself).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from tqdm import tqdm

from kmsync_common.errors import DependencyUnavailable
from kmsync_config import ConfigError, TenantsConfig, load_settings, load_tenants
from kmsync_ingest.backfill_pace import TransformBacklogGate
from kmsync_ingest.errors import BadInput
from kmsync_ingest.files import FileReport, ingest_file, parse_params
from kmsync_ingest.metrics import IngestMetrics
from kmsync_ingest.publisher import KafkaUnavailable, Publisher
from kmsync_ingest.settings import IngestSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kmsync backfill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="a Kaltura report CSV (4021, 60013) or poll answers CSV")
    parser.add_argument("--tenants", type=Path, help="tenants file (default: KMSYNC_TENANTS_FILE)")
    parser.add_argument("--partner-id", type=int, help="default: from Report_<id>_<partnerId>_... file name")
    parser.add_argument("--event-id", type=int, help="virtual event id (needed if the partner has several)")
    parser.add_argument("--entry-id", help="the session, for reports without an entry_id column (4021, 60013)")
    parser.add_argument("--report-id", type=int, help="default: from the file name or the header")
    parser.add_argument("--not-final", action="store_true", help="figures taken while sessions were running")
    parser.add_argument("--live", action="store_true",
                        help="send the rows in the live lane (default: the backfill lane, served after live data "
                             "on the instance's backfill_share of the Marketo budget)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--url", help="upload to this ingest (base URL, e.g. https://ingest.example.com) "
                                      "instead of producing to Kafka directly")
    parser.add_argument("--token-file", type=Path, help=f"bearer token for --url (default: ${TOKEN_ENV})")
    return parser


TOKEN_ENV = "KMSYNC_INGEST_TOKEN"
UPLOAD_PATH = "/ingest/kaltura/reports"


def upload_token(token_file: Path | None) -> str:
    """The bearer token for --url: the first line of --token-file, else $KMSYNC_INGEST_TOKEN."""
    if token_file is not None:
        try:
            lines = token_file.read_text().split()
        except OSError as exc:
            raise BadInput(400, "cannot read the token", [f"--token-file: {exc.strerror}"]) from None
        token = lines[0] if lines else ""
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise BadInput(401, "no upload token", [f"token: give --token-file or set {TOKEN_ENV}"])
    return token


async def _file_chunks(fh: BinaryIO) -> AsyncIterator[bytes]:
    while chunk := fh.read(256 * 1024):
        yield chunk


async def upload(url: str, path: Path, raw_params: dict[str, object], token: str) -> dict[str, Any]:
    """POST the file (streamed) to ingest; its JSON report. Raises BadInput (refused),
    DependencyUnavailable (ingest unreachable) or KafkaUnavailable (ingest answered 503)."""
    params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in raw_params.items() if v is not None}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=3600)) as http:
        with path.open("rb") as fh:
            try:
                answer = await http.post(url.rstrip("/") + UPLOAD_PATH, params=params, headers=headers,
                                         content=_file_chunks(fh))
            except httpx.HTTPError as exc:
                raise DependencyUnavailable(f"ingest at {url} unreachable: {type(exc).__name__}") from None
    try:
        body: dict[str, Any] = answer.json()
    except ValueError:
        body = {"error": f"HTTP {answer.status_code}", "problems": [answer.text[:200]]}
    if answer.status_code == 503:
        raise KafkaUnavailable(f"ingest answered 503: {'; '.join(body.get('problems', []))}")
    if answer.status_code != 200:
        raise BadInput(answer.status_code, str(body.get("error")), list(body.get("problems", [])))
    return body


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return max(0, sum(1 for line in fh if line.strip()) - 1)


async def backfill(
    path: Path, data: bytes | BinaryIO, raw_params: dict[str, object], settings: IngestSettings, tenants: TenantsConfig,
    show_progress: bool = True, total_rows: int | None = None,
) -> FileReport:
    """Load one file's bytes; ``path`` names it (progress bar, messages)."""
    params = parse_params({k: v for k, v in raw_params.items() if v is not None})
    publisher = Publisher(settings.kafka_bootstrap, settings.topic_prefix, IngestMetrics(),
                          ack_timeout_seconds=settings.kafka_ack_timeout_seconds,
                          batch_size=settings.produce_batch_size)
    gate = TransformBacklogGate(settings.kafka_bootstrap, settings.topic_prefix, settings.backfill_transform_group,
                                settings.backfill_max_transform_lag if params.history else 0)
    await publisher.start()
    try:
        await gate.start()
        with tqdm(total=total_rows, unit="row", desc=path.name, disable=not show_progress,
                  file=sys.stderr) as bar:

            def advance(rows: int) -> None:
                bar.update(rows)

            return await ingest_file(data, params, tenants, publisher, publisher.metrics,
                                     progress=advance, chunk_size=settings.produce_batch_size,
                                     max_line_bytes=settings.max_csv_line_bytes, poll_order=settings.poll_order,
                                     before_chunk=gate.wait)
    finally:
        try:
            await gate.stop()
        finally:
            await publisher.stop()


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.url:
        return _main_upload(args)
    try:
        overrides: dict[str, object] = {"tenants_file": args.tenants} if args.tenants else {}
        settings = load_settings(IngestSettings, **overrides)
        tenants = load_tenants(settings.tenants_file, check_secrets=False)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"kmsync backfill: {args.file}: no such file", file=sys.stderr)
        return 2
    raw = {"partner_id": args.partner_id, "virtual_event_id": args.event_id, "entry_id": args.entry_id,
           "report_id": args.report_id, "filename": args.file.name, "final": not args.not_final,
           "history": not args.live}
    try:
        with args.file.open("rb") as data:
            report = asyncio.run(backfill(args.file, data, raw, settings, tenants, not args.no_progress,
                                          _count_lines(args.file)))
    except BadInput as exc:
        print(f"kmsync backfill: {args.file}: {exc.summary}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    for line, problems in report.bad_rows:
        print(f"{args.file}:{line}: " + "; ".join(problems), file=sys.stderr)
    if report.bad_count > len(report.bad_rows):
        print(f"... and {report.bad_count - len(report.bad_rows)} more bad rows (see ingest.dlq.v1)",
              file=sys.stderr)
    print(f"{args.file}: {report.layout}, {report.rows} row(s): {report.produced} loaded, "
          f"{report.bad_count} bad (dead-lettered)")
    return 1 if report.bad_count else 0


def _main_upload(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        print(f"kmsync backfill: {args.file}: no such file", file=sys.stderr)
        return 2
    raw = {"partner_id": args.partner_id, "virtual_event_id": args.event_id, "entry_id": args.entry_id,
           "report_id": args.report_id, "filename": args.file.name, "final": not args.not_final,
           "history": not args.live}
    try:
        body = asyncio.run(upload(args.url, args.file, raw, upload_token(args.token_file)))
    except BadInput as exc:
        print(f"kmsync backfill: {args.file}: {exc.summary} ({exc.status})", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    for bad in body.get("bad_rows", []):
        print(f"{args.file}:{bad['line']}: " + "; ".join(bad["problems"]), file=sys.stderr)
    print(f"{args.file}: {body.get('layout')}, {body.get('rows')} row(s): {body.get('produced')} loaded, "
          f"{body.get('bad')} bad (dead-lettered)")
    return 1 if body.get("bad") else 0
