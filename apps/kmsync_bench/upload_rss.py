"""Measure ingest's memory while several large report uploads run at once (issue #15).

    .venv/bin/python -m kmsync_bench.upload_rss [--uploads 4] [--megabytes 50]

Starts a private Kafka broker and `kmsync ingest --no-pull` as its own process (so its RSS is its
own), writes a poll answers CSV of the given size, uploads it N times at once with a bearer token,
and samples the process's VmRSS every 100 ms; prints the baseline, the peak (VmHWM) and what was
loaded. A measurement, not a test: docs/benchmarks.md records its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import yaml

from kmsync_common.clock import SYSTEM_CLOCK
from kmsync_contracts.topics import ALL_TOPICS
from kmsync_kafka import ensure_topics
from kmsync_testing.kafka_broker import free_port, start_broker

TOKEN = "rss-measurement-token-0123456789"
HEADER = "\ufeffentry_id,poll_id,poll_type,question,user_id,email,answer,answered_at\n"


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def write_csv(path: Path, megabytes: int) -> int:
    target = megabytes * 1_048_576
    rows = 0
    with path.open("w", encoding="utf-8") as fh:
        fh.write(HEADER)
        size = len(HEADER.encode())
        while size < target:
            line = (f"1_rss00001,p{rows % 10},crowd vote,Which option do you prefer?,user{rows},"
                    f"user{rows}@example.com,Option {rows % 4},2025-06-16T14:00:00.000Z\n")
            fh.write(line)
            size += len(line)
            rows += 1
    return rows


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(256 * 1024):
            yield chunk


def start_ingest(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, stderr=log.open("wb"))


def _ingest_env(bootstrap: str, work: Path, port: int, uploads: int) -> dict[str, str]:
    """Ingest's environment: a tenants file whose endpoints are never called (no pulls), upload
    tokens, the concurrency under test and a spool directory."""
    (work / "secret").write_text("not-used-no-pulls")
    tenants = {
        "marketo_instances": {"m": {"munchkin_id": "123-ABC-456", "endpoint": "http://127.0.0.1:1",
                                    "client_id": "x", "client_secret": {"file": str(work / "secret")}}},
        "kaltura_partners": {1234567: {"service_url": "http://127.0.0.1:1", "user_profile_url": "http://127.0.0.1:1",
                                       "admin_secret": {"file": str(work / "secret")}}},
        "events": [{"name": "rss", "partner_id": 1234567, "virtual_event_id": 1, "marketo_instance": "m",
                    "program_id": 1001}],
    }
    (work / "tenants.yaml").write_text(yaml.safe_dump(tenants))
    return {**os.environ, "KMSYNC_KAFKA_BOOTSTRAP": bootstrap,
            "KMSYNC_TENANTS_FILE": str(work / "tenants.yaml"), "KMSYNC_HTTP_HOST": "127.0.0.1",
            "KMSYNC_HTTP_PORT": str(port), "RSS_TOKEN": TOKEN,
            "KMSYNC_UPLOAD_TOKENS": '{"env": "RSS_TOKEN"}', "KMSYNC_MAX_CONCURRENT_UPLOADS": str(uploads),
            "KMSYNC_UPLOAD_SPOOL_DIR": str(work)}


async def _wait_ready(http: httpx.AsyncClient, base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = SYSTEM_CLOCK.monotonic() + 120
    while True:
        try:
            if (await http.get(f"{base}/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if SYSTEM_CLOCK.monotonic() > deadline or proc.poll() is not None:
            tail = (await asyncio.to_thread(log.read_text))[-2000:]
            raise RuntimeError(f"ingest did not become ready: {tail}")
        await asyncio.sleep(0.2)  # readiness poll with a deadline


async def _upload_and_sample(http: httpx.AsyncClient, base: str, pid: int, csv: Path,
                             uploads: int) -> tuple[list[httpx.Response], list[int], float]:
    """`uploads` concurrent uploads of `csv`, ingest's RSS sampled every 0.1 s meanwhile."""
    samples: list[int] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            samples.append(rss_kib(pid))
            await asyncio.sleep(0.1)  # sampling interval

    async def upload(i: int) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/csv"}
        return await http.post(f"{base}/ingest/kaltura/reports", content=file_chunks(csv),
                               params={"filename": f"polls_{i}.csv"}, headers=headers)

    sampler = asyncio.create_task(sample())
    t0 = SYSTEM_CLOCK.monotonic()
    answers = await asyncio.gather(*(upload(i) for i in range(uploads)))
    elapsed = SYSTEM_CLOCK.monotonic() - t0
    done.set()
    await sampler
    return list(answers), samples, elapsed


async def measure(uploads: int, megabytes: int, work: Path) -> dict[str, object]:
    broker = start_broker(work / "kafka")
    proc: subprocess.Popen[bytes] | None = None
    try:
        await ensure_topics(broker.bootstrap, ALL_TOPICS)
        port = free_port()
        env = _ingest_env(broker.bootstrap, work, port, uploads)
        kmsync = Path(sys.executable).parent / "kmsync"
        proc = start_ingest([str(kmsync), "ingest", "--no-pull"], env, work / "ingest.log")
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=1800) as http:
            await _wait_ready(http, base, proc, work / "ingest.log")
            csv = work / "upload.csv"
            rows = write_csv(csv, megabytes)
            baseline = rss_kib(proc.pid)
            answers, samples, elapsed = await _upload_and_sample(http, base, proc.pid, csv, uploads)
            peak = rss_kib(proc.pid, "VmHWM")
        return {
            "uploads": uploads, "megabytes_each": megabytes, "rows_each": rows,
            "statuses": [a.status_code for a in answers],
            "produced": [a.json().get("produced") for a in answers],
            "baseline_rss_mib": round(baseline / 1024, 1), "peak_rss_mib": round(peak / 1024, 1),
            "max_sampled_rss_mib": round(max(samples, default=0) / 1024, 1), "seconds": round(elapsed, 1),
        }
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kmsync_bench.upload_rss", description=__doc__)
    parser.add_argument("--uploads", type=int, default=4, help="concurrent uploads (default 4)")
    parser.add_argument("--megabytes", type=int, default=50, help="size of each uploaded CSV (default 50)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kmsync-rss-") as tmp:
        result = asyncio.run(measure(args.uploads, args.megabytes, Path(tmp)))
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
