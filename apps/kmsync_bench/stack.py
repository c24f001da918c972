"""Everything a run needs, started as production runs it: a Kafka broker, the Marketo sandbox and
the three services as separate processes (so each one's peak RSS is its own); stopped at the end."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kmsync_bench import passthrough
from kmsync_bench.config import (
    BACKFILL_INSTANCE,
    CAPACITY_INSTANCE,
    DAILY_QUOTA,
    EFFICIENCY_INSTANCE,
    INSTANCE_RATE_LIMIT,
    NAIVE_INSTANCE,
    BenchConfig,
)
from kmsync_bench.machine import peak_rss_mib
from kmsync_bench.sandbox import CLIENT_ID, CLIENT_SECRET, SandboxProcess, instances_file, start_sandbox
from kmsync_bench.workload import PARTNER_ID, PROGRAM_ID
from kmsync_cli.processes import Child, ProcessGroup
from kmsync_contracts.topics import ALL_TOPICS
from kmsync_kafka import ensure_topics
from kmsync_testing.kafka_broker import DEPLOYED_JVM_OPTIONS, BrokerError, KafkaBroker, start_broker

SECRET_ENV = "KMSYNC_BENCH_MARKETO_SECRET"
KALTURA_SECRET_ENV = "KMSYNC_BENCH_KALTURA_SECRET"
#: Ingest refuses report uploads without a bearer token (services/kmsync_ingest/README.md "Security").
UPLOAD_TOKEN_ENV = "KMSYNC_BENCH_UPLOAD_TOKEN"
LIFTED = 1_000_000
#: The broker's warm-up (kmsync_bench.sections.warm_broker) on an instance and event of its own, every limit lifted.
WARM_UP_INSTANCE = "555-EEE-555"
EVENT_IDS = {"latency": 11, "capacity": 12, "backfill": 13, "warm-up": 14}
SERVICES = ("ingest", "transform", "sink")


def sandbox_limits() -> dict[str, dict[str, Any]]:
    """Per instance: Marketo's real limits where budget is measured, lifted where it is not."""
    real = {"rate_limit": INSTANCE_RATE_LIMIT, "rate_window_seconds": 20.0, "max_concurrency": 10,
            "daily_quota": DAILY_QUOTA}
    lifted = {"rate_limit": LIFTED, "rate_window_seconds": 20.0, "max_concurrency": 1000, "daily_quota": LIFTED}
    return {
        EFFICIENCY_INSTANCE: dict(real),
        NAIVE_INSTANCE: {**lifted, "max_concurrency": 10},
        CAPACITY_INSTANCE: dict(lifted),
        WARM_UP_INSTANCE: dict(lifted),
        # Bulk imports finish in seconds here (real Marketo: minutes); the call counts are what matters.
        BACKFILL_INSTANCE: {**real, "import_seconds_base": 1.0, "import_seconds_per_row": 0.0001},
    }


def tenants_doc(sandbox: SandboxProcess, config: BenchConfig) -> dict[str, Any]:
    def instance(munchkin: str, share: float, quota: int, **extra: Any) -> dict[str, Any]:
        return {"munchkin_id": munchkin, "endpoint": sandbox.instance_url(munchkin), "client_id": CLIENT_ID,
                "client_secret": {"env": SECRET_ENV}, "share": share, "daily_quota": quota, **extra}

    def event(name: str, instance_name: str, **extra: Any) -> dict[str, Any]:
        return {"name": f"bench-{name}", "partner_id": PARTNER_ID, "virtual_event_id": EVENT_IDS[name],
                "marketo_instance": instance_name, "program_id": PROGRAM_ID, **extra}

    dead = "http://127.0.0.1:9"  # Kaltura is never called: rows come as report CSVs (file mode)
    return {
        "marketo_instances": {
            # Sections 1-4 measure the REST path (records per call, latency, throughput): bulk never on these
            # instances (the sink's default since issue #18 chooses bulk per window from volume and budget).
            "efficiency": instance(EFFICIENCY_INSTANCE, config.sink_share, DAILY_QUOTA, bulk_min_records=0),
            # The sandbox lifts this instance's limits; so does the sink's limiter, or section 4 would
            # measure the limiter (100 calls / 20 s) instead of the pipeline.
            "capacity": instance(CAPACITY_INSTANCE, 1.0, LIFTED, rate_limit_calls=LIFTED, bulk_min_records=0),
            "warm-up": instance(WARM_UP_INSTANCE, 1.0, LIFTED, rate_limit_calls=LIFTED, bulk_min_records=0),
            "backfill": instance(BACKFILL_INSTANCE, config.backfill_share, DAILY_QUOTA,
                                 bulk_min_records=config.backfill_bulk_min_records,
                                 backfill_share=config.backfill_lane_share),
        },
        "kaltura_partners": {PARTNER_ID: {"service_url": dead, "user_profile_url": dead,
                                          "admin_secret": {"env": KALTURA_SECRET_ENV}}},
        "events": [event("latency", "efficiency"), event("capacity", "capacity"), event("warm-up", "warm-up"),
                   # The seed recommends custom objects; activities have no bulk import
                   # (docs/reference/marketo-api.md §7.3).
                   event("backfill", "backfill", outputs={"custom_activities": False})],
    }


def start_broker_retrying(data_dir: Path, attempts: int = 3) -> KafkaBroker:
    """start_broker, tried again on failure: kmsync_kafka's random cluster id starts with '-' once in
    64 starts and kafka-storage then reads it as an option (reported to its owner)."""
    for attempt in range(1, attempts + 1):
        try:
            # A released broker's JVM (heap 1 GiB, its GC options), as docker-compose.yml's image runs it.
            return start_broker(data_dir.with_name(f"{data_dir.name}-{attempt}"), jvm_options=DEPLOYED_JVM_OPTIONS)
        except BrokerError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Stack:
    work: Path
    config: BenchConfig
    broker: KafkaBroker | None = None
    group: ProcessGroup | None = None
    sandbox: SandboxProcess | None = None
    services: dict[str, Child] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    tenants_file: Path | None = None
    #: The bearer token this run's ingest accepts for report uploads (random per run).
    upload_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def bootstrap(self) -> str:
        assert self.broker is not None
        return self.broker.bootstrap

    @property
    def bin_dir(self) -> Path:
        return Path(sys.executable).parent

    def env(self) -> dict[str, str]:
        assert self.tenants_file is not None
        return {"KMSYNC_KAFKA_BOOTSTRAP": self.bootstrap, "KMSYNC_TENANTS_FILE": str(self.tenants_file),
                "KMSYNC_HTTP_HOST": "127.0.0.1", "KMSYNC_LOG_LEVEL": "WARNING",
                SECRET_ENV: CLIENT_SECRET, KALTURA_SECRET_ENV: "bench-kaltura-admin-secret"}

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.broker = start_broker_retrying(self.work / "kafka")
        asyncio.run(ensure_topics(self.bootstrap, ALL_TOPICS))
        # Created now, not when the capacity section fills them: a topic written right after its
        # creation makes the producer retry on "not leader" while the partitions elect leaders.
        asyncio.run(passthrough.create_topics(self.bootstrap, passthrough.partitions()))
        self.group = ProcessGroup(self.work / "logs")
        self.sandbox = start_sandbox(self.group, Path(sys.executable),
                                     instances_file(self.work / "instances.yaml", sandbox_limits()))
        self.tenants_file = self.work / "tenants.yaml"
        self.tenants_file.write_text(yaml.safe_dump(tenants_doc(self.sandbox, self.config)))
        kmsync = str(self.bin_dir / "kmsync")
        extra = {"ingest": {"KMSYNC_PULL_ENABLED": "false", UPLOAD_TOKEN_ENV: self.upload_token,
                            "KMSYNC_UPLOAD_TOKENS": f'[{{"env": "{UPLOAD_TOKEN_ENV}"}}]'},
                 "transform": {},
                 "sink": {}}
        for name in SERVICES:
            self.ports[name] = free_port()
            env = {**self.env(), "KMSYNC_HTTP_PORT": str(self.ports[name]), **extra[name]}
            self.services[name] = self.group.start(name, [kmsync, name], env)
        for name, child in self.services.items():
            self.group.wait_http_ok(child, f"http://127.0.0.1:{self.ports[name]}/healthz", timeout=120)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def peak_rss(self) -> dict[str, float]:
        out: dict[str, float] = {}
        procs = dict(self.services)
        if self.sandbox is not None:
            procs["marketo-sandbox"] = self.sandbox.child
        for name, child in procs.items():
            value = peak_rss_mib(child.process.pid)
            if value is not None:
                out[name] = value
        return out

    def cpu_pids(self) -> dict[str, list[int]]:
        """The root process of each service, the Marketo sandbox and the broker (for kmsync_bench.cpu)."""
        out = {name: [child.process.pid] for name, child in self.services.items()}
        if self.sandbox is not None:
            out["marketo-sandbox"] = [self.sandbox.child.process.pid]
        if self.broker is not None:
            out["broker"] = [self.broker.process.pid]
        return out

    def check_alive(self) -> None:
        if self.group is None:
            return
        dead = self.group.dead()
        if dead:
            raise RuntimeError("; ".join(f"{c.name} exited with {c.process.returncode}:\n{c.log_tail()}"
                                         for c in dead))

    def stop(self) -> None:
        if self.group is not None:
            self.group.stop_all()
        if self.broker is not None:
            self.broker.stop()

    def backfill_argv(self, csv_path: Path, entry_id: str) -> tuple[list[str], dict[str, str]]:
        argv = [str(self.bin_dir / "kmsync"), "backfill", str(csv_path), "--partner-id", str(PARTNER_ID),
                "--event-id", str(EVENT_IDS["backfill"]), "--entry-id", entry_id, "--report-id", "4021",
                "--no-progress"]
        return argv, {**os.environ, **self.env()}
