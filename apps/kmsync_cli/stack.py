"""The whole pipeline as local processes: Kafka, both sandboxes, ingest, transform and sink.

Used by `kmsync run` (the demo) and the end-to-end test. Every service runs as its own process
with its own settings from the environment, exactly as in production; only the endpoints point at
the sandboxes. Everything started here is stopped by `stop()`, in reverse order.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kmsync_cli.processes import ProcessGroup
from kmsync_cli.reconcile import DEMO_LEAD_FIELDS
from kmsync_cli.reconcile_rest import READBACK_MAX_CALLS, READBACK_SHARE, ExternalMarketo
from kmsync_contracts.topics import ALL_TOPICS
from kmsync_kafka import ensure_topics
from kmsync_testing.kafka_broker import KafkaBroker, free_port, start_broker

BIN = Path(sys.executable).parent
MARKETO_SECRET_ENV = "KMSYNC_DEMO_MARKETO_CLIENT_SECRET"
KALTURA_SECRET_ENV = "KMSYNC_DEMO_KALTURA_ADMIN_SECRET"
EMAIL_HASH_KEY_ENV = "KMSYNC_DEMO_EMAIL_HASH_KEY"
PROGRAM_ID = 1001  # the event program the Marketo sandbox's kaltura preset provisions
#: Where the Kaltura sandbox serves a session's poll answers (ingest's KMSYNC_POLLS_CSV_URL).
POLLS_CSV_URL = "{service_url}/_sandbox/exports/polls/{entry_id}.csv"
#: The shell exports `kmsync trace` / `kmsync reconcile` need against a running stack (in the work dir).
OPERATOR_ENV_FILE = "kmsync.env"
#: The pipeline's services, each started as `kmsync <service>`.
SERVICES = ("ingest", "transform", "sink")


@dataclass
class StackOptions:
    work_dir: Path = Path(".run")
    registrants: int = 3000
    sessions: int = 4
    #: Scenario seconds per real second.
    speed: float = 2000.0
    seed: int = 7
    topic_prefix: str = ""
    #: Processes per service (ingest, transform, sink): replicas share the work through their
    #: consumer groups; the first of each is named after the service, the others `<service>-2` ...
    replicas: int = 1
    #: Hours of invitations and registrations before the event (the Kaltura sandbox's
    #: registration_lead_hours); None keeps the sandbox's default (72). At a given --speed most of a
    #: run's playing time is this lead, so tests shorten it.
    registration_lead_hours: float | None = None
    #: Extra environment for the services (e.g. sink window settings).
    service_env: dict[str, str] = field(default_factory=dict)
    #: An existing Marketo instance to write to instead of a provisioned sandbox (issue #17).
    marketo: ExternalMarketo | None = None
    #: The sink's share of that instance's limits (the read-back has its own, reconcile_rest.py).
    marketo_share: float = 0.5
    #: The REST read-back's share of the instance's rate window, and its calls per reconciliation.
    readback_share: float = READBACK_SHARE
    readback_max_calls: int = READBACK_MAX_CALLS


def http_json(url: str, body: object | None = None, timeout: float = 30.0, method: str | None = None) -> Any:
    """The JSON answer of `url`: a GET, or with `body` a POST (or `method`, e.g. PUT) of it as JSON."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method or ("GET" if body is None else "POST"),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def http_text(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode())


@dataclass
class Stack:
    options: StackOptions
    broker: KafkaBroker | None = None
    processes: ProcessGroup | None = None
    ports: dict[str, int] = field(default_factory=dict)
    credentials: dict[str, Any] = field(default_factory=dict)
    email_hash_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: The environment every service shares (Kafka, topics, tenants file, secrets, email-hash key).
    common_env: dict[str, str] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def marketo_url(self) -> str:
        external = self.options.marketo
        return external.endpoint if external is not None else self.url("marketo-sandbox")

    @property
    def program_id(self) -> int:
        external = self.options.marketo
        return external.program_id if external is not None else PROGRAM_ID

    @property
    def kaltura_url(self) -> str:
        return self.url("kaltura-sandbox")

    def start(self) -> None:
        """Kafka and its topics, both sandboxes, then every service replica; each step waits for
        what it started to answer before the next one."""
        work = self.options.work_dir.resolve()
        work.mkdir(parents=True, exist_ok=True)
        self.processes = ProcessGroup(work / "logs")
        self.broker = start_broker(work / "kafka")
        asyncio.run(ensure_topics(self.broker.bootstrap, ALL_TOPICS, prefix=self.options.topic_prefix))
        for name in ("marketo-sandbox", "kaltura-sandbox", *self.processes_of_services()):
            if name != "marketo-sandbox" or self.options.marketo is None:
                self.ports[name] = free_port()
        self._start_sandboxes(work)
        self.credentials = http_json(f"{self.kaltura_url}/_sandbox/credentials")
        instance = self._marketo_instance()
        tenants = work / "tenants.yaml"
        tenants.write_text(yaml.safe_dump(self._tenants(self.credentials, instance), sort_keys=False))
        self.common_env = self._common_env(tenants, instance)
        self._start_services(self.common_env)
        self.route_notifications("ingest")
        self.write_operator_env(work / OPERATOR_ENV_FILE)

    def operator_env(self) -> dict[str, str]:
        """What `kmsync trace` and `kmsync reconcile` need to look at this stack: the services' Kafka,
        topic prefix, tenants file with the secrets it references, email-hash key and poll answers URL."""
        return {**{k: v for k, v in self.common_env.items() if k != "KMSYNC_HTTP_HOST"},
                "KMSYNC_POLLS_CSV_URL": POLLS_CSV_URL}

    def write_operator_env(self, path: Path) -> None:
        """``operator_env`` as shell exports, readable by this user only (it holds the sandboxes' secrets)."""
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(self.operator_env().items())))

    def route_notifications(self, replica: str) -> None:
        """Point the Kaltura sandbox's notifications (its retries too) at one ingest replica.

        In production Kaltura posts to one URL in front of every ingest replica (a Kubernetes
        Service, a load balancer) that stops routing to a replica once it is down; the local stack
        has no load balancer, so whoever takes a replica down for good moves the target here."""
        http_json(f"{self.kaltura_url}/_sandbox/notifications/target",
                  {"url": f"{self.url(replica)}/ingest/kaltura/notification/{self.credentials['partner_id']}"})

    def _start_sandboxes(self, work: Path) -> None:
        """The Marketo sandbox (kaltura preset; not for an existing instance) and the Kaltura sandbox
        with the generated event, paused until `play()`."""
        opts, procs = self.options, self.processes
        assert procs is not None
        marketo = None
        if opts.marketo is None:
            marketo = procs.start("marketo-sandbox", [
                str(BIN / "marketo-sandbox"), "--host", "127.0.0.1", "--port", str(self.ports["marketo-sandbox"]),
                "--preset", "kaltura", "--seed", str(opts.seed)])
        scenario = work / "scenario.yaml"
        lead = {} if opts.registration_lead_hours is None else {"registration_lead_hours": opts.registration_lead_hours}
        scenario.write_text(yaml.safe_dump({
            "registrants": opts.registrants, "sessions": opts.sessions, **lead,
            "notifications": {"kinds": ["virtual_event", "entry", "user_profile"], "retry_base_seconds": 0.5},
        }))
        kaltura = procs.start("kaltura-sandbox", [
            str(BIN / "kaltura-sandbox"), "--host", "127.0.0.1", "--port", str(self.ports["kaltura-sandbox"]),
            "--scenario", str(scenario), "--seed", str(opts.seed), "--speed", "0"])
        if marketo is not None:
            procs.wait_http_ok(marketo, f"{self.marketo_url}/_sandbox/instances")
        procs.wait_http_ok(kaltura, f"{self.kaltura_url}/_sandbox/status")

    def _marketo_instance(self) -> dict[str, Any]:
        """Munchkin id and API credentials: the sandbox's default instance, or the existing one."""
        external = self.options.marketo
        if external is None:
            default = next(i for i in http_json(f"{self.marketo_url}/_sandbox/instances") if i["default"])
            return {"munchkin_id": default["munchkinId"], **default["clients"][0]}
        return {"munchkin_id": external.munchkin_id, "clientId": external.client_id,
                "clientSecret": external.client_secret.get_secret_value()}

    def _common_env(self, tenants: Path, instance: dict[str, Any]) -> dict[str, str]:
        assert self.broker is not None
        return {
            "KMSYNC_KAFKA_BOOTSTRAP": self.broker.bootstrap,
            "KMSYNC_TOPIC_PREFIX": self.options.topic_prefix,
            "KMSYNC_TENANTS_FILE": str(tenants),
            "KMSYNC_HTTP_HOST": "127.0.0.1",
            MARKETO_SECRET_ENV: instance["clientSecret"],
            KALTURA_SECRET_ENV: self.credentials["admin_secret"],
            # One email-hash key for every service of the run, so a hashed email in one service's
            # log matches the others' (docs/configuration.md); random per run, never printed.
            "KMSYNC_EMAIL_HASH_SECRET": f'{{"env": "{EMAIL_HASH_KEY_ENV}"}}',
            EMAIL_HASH_KEY_ENV: self.email_hash_key,
        }

    def _start_services(self, common: dict[str, str]) -> None:
        """Every replica of ingest, transform and sink as `kmsync <service>`; returns when all are healthy."""
        procs = self.processes
        assert procs is not None
        per_service = {
            "ingest": {
                "KMSYNC_PULL_INTERVAL_SECONDS": "2",
                "KMSYNC_SESSION_REPULL_SECONDS": "3",
                "KMSYNC_POLLS_CSV_URL": POLLS_CSV_URL,
            },
            "sink": {"KMSYNC_WINDOW_MAX_AGE_SECONDS": "1"},
        }
        if self.options.replicas > 1:  # a killed ingest replica's events move after the group's session timeout
            per_service["ingest"]["KMSYNC_INGEST_SESSION_TIMEOUT_SECONDS"] = "6"
        started = []
        for service in SERVICES:  # all at once: they share nothing but Kafka, whose topics exist
            for name in self.replicas(service):
                env = {**common, **per_service.get(service, {}), **self.options.service_env,
                       "KMSYNC_HTTP_PORT": str(self.ports[name])}
                if service == "transform":  # stable across its restarts: it ends what it left open (left_open.py)
                    env["KMSYNC_TRANSFORM_INSTANCE_ID"] = name
                started.append((name, procs.start(name, [str(BIN / "kmsync"), service], env=env)))
        for name, child in started:
            procs.wait_http_ok(child, f"{self.url(name)}/healthz", timeout=120)

    def processes_of_services(self) -> set[str]:
        """Every process name of every service's replicas."""
        return {name for service in SERVICES for name in self.replicas(service)}

    def replicas(self, service: str) -> list[str]:
        """The process names of `service`'s replicas: the service's name, then `<service>-2` ..."""
        return [service, *(f"{service}-{i}" for i in range(2, self.options.replicas + 1))]

    def _tenants(self, creds: dict[str, Any], instance: dict[str, Any]) -> dict[str, Any]:
        return {
            "marketo_instances": {"demo": {
                "munchkin_id": instance["munchkin_id"],
                "endpoint": self.marketo_url,
                "client_id": instance["clientId"],
                "client_secret": {"env": MARKETO_SECRET_ENV},
                # A provisioned sandbox is the demo's alone; an existing instance is shared.
                "share": 0.8 if self.options.marketo is None else self.options.marketo_share,
            }},
            "kaltura_partners": {creds["partner_id"]: {
                "service_url": creds["service_url"],
                "user_profile_url": creds["user_profile_url"],
                "admin_secret": {"env": KALTURA_SECRET_ENV},
                # The event's schedule, for Pre-event vs During-event visit (docs/reference/kaltura-api.md §9.1).
                "events_api_url": creds["events_api_url"],
            }},
            "events": [{
                "name": "demo-event",
                "partner_id": creds["partner_id"],
                "virtual_event_id": creds["virtual_event_id"],
                "app_guid": creds["app_guid"],
                "marketo_instance": "demo",
                "program_id": self.program_id,
                "sessions": [{"entry_id": e} for e in creds["session_entry_ids"]],
                # Registration data to lead fields (issue #16 §3): the defaults (names, title, company,
                # country) plus one form answer into a standard field, as reconcile.REGISTRANT_LEAD_FIELDS checks.
                "lead_fields": DEMO_LEAD_FIELDS,
            }],
        }

    def play(self) -> None:
        http_json(f"{self.kaltura_url}/_sandbox/play", {"speed": self.options.speed})

    def kaltura_status(self) -> dict[str, Any]:
        status: dict[str, Any] = http_json(f"{self.kaltura_url}/_sandbox/status")
        return status

    def metrics(self, name: str) -> str:
        """The /metrics text of process `name`; for a service, of all its replicas that answer
        (so kmsync_common.metrics_text.sample_sum adds them up)."""
        texts = []
        for replica in self.replicas(name) if name in SERVICES else [name]:
            try:
                texts.append(http_text(f"{self.url(replica)}/metrics"))
            except OSError:
                continue
        return "\n".join(texts)

    def check_alive(self) -> None:
        assert self.processes is not None
        dead = self.processes.dead()
        if dead:
            raise RuntimeError("; ".join(f"{c.name} exited ({c.process.returncode}):\n{c.log_tail()}" for c in dead))
        if self.broker is not None and not self.broker.is_running():
            raise RuntimeError(f"Kafka exited:\n{self.broker.log_tail()}")

    def stop(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        if self.processes is not None:
            codes = self.processes.stop_all()
        if self.broker is not None:
            self.broker.stop()
        return codes


def environment_summary() -> str:
    return f"python {sys.version.split()[0]}, {os.cpu_count()} cores"
