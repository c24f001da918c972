"""A real single-node Apache Kafka broker (KRaft) from Maven Central jars and the machine's JDK.

No Docker and no release tarball: Maven resolves `org.apache.kafka:kafka_2.13` and its runtime
dependencies (deploy/kafka/pom.xml) into a git-ignored cache; this module formats KRaft storage
in a fresh directory, starts `kafka.Kafka` on free loopback ports, waits until the broker serves
metadata (failing fast with the broker's log if the JVM dies) and stops it cleanly.
Recipe and pitfalls: docs/reference/streaming.md §1.3-§1.6.

Where things are: the broker jars are in ``KMSYNC_KAFKA_LIBS`` (the Makefile exports it, for
``KMSYNC_KAFKA_VERSION``); without it, in ``.cache/kafka/<version>/libs`` of the repository, found by walking up
from the current directory to the one holding ``deploy/kafka/pom.xml`` (also what Maven resolves them from).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from kmsync_testing.processes import die_with_parent, free_port, kill_process, stop_process

DEFAULT_KAFKA_VERSION = "4.4.0"
POM_IN_REPOSITORY = Path("deploy") / "kafka" / "pom.xml"
STARTED_LINE = "Kafka Server started"

# log4j 1.x (reload4j) console config: quiet, but keep the server's own start/stop lines.
LOG4J_PROPERTIES = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
"""


#: The JVM a released broker runs with: kafka-server-start.sh's heap (-Xmx1G -Xms1G unless KAFKA_HEAP_OPTS) and
#: kafka-run-class.sh's KAFKA_JVM_PERFORMANCE_OPTS, what the apache/kafka image of docker-compose.yml starts.
#: The benchmark's broker runs with these (it measures what users run); tests keep a smaller heap.
DEPLOYED_JVM_OPTIONS = (
    "-Xmx1G", "-Xms1G", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true",
)


class BrokerError(RuntimeError):
    """The broker could not be fetched, formatted or started; the message carries its log."""


def kafka_version() -> str:
    return os.environ.get("KMSYNC_KAFKA_VERSION", DEFAULT_KAFKA_VERSION)


def repository_root(start: Path | None = None) -> Path:
    """The directory holding deploy/kafka/pom.xml: ``start`` (default: the current directory) or a parent."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / POM_IN_REPOSITORY).is_file():
            return directory
    raise BrokerError(
        f"cannot find the Kafka broker jars: KMSYNC_KAFKA_LIBS is not set and neither {here} nor a parent holds "
        f"{POM_IN_REPOSITORY}; run from inside the kmsync repository or set KMSYNC_KAFKA_LIBS to a directory "
        "of broker jars (`make kafka-jars` fills one)")


def pom_path() -> Path:
    """The Maven project that lists the broker's jars (deploy/kafka/pom.xml of the repository)."""
    return repository_root() / POM_IN_REPOSITORY


def libs_dir(version: str | None = None) -> Path:
    """Where the broker jars of ``version`` are: ``KMSYNC_KAFKA_LIBS`` (for the configured version), else the
    repository's git-ignored cache."""
    configured = os.environ.get("KMSYNC_KAFKA_LIBS")
    if configured and version is None:
        return Path(configured)
    return repository_root() / ".cache" / "kafka" / (version or kafka_version()) / "libs"


def ensure_jars(version: str | None = None) -> Path:
    """Resolve the broker jars with Maven once; later calls reuse the cache."""
    target = libs_dir(version)
    marker = target / ".complete"
    if marker.exists():
        return target
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is needed to fetch the Kafka broker jars from Maven Central")
    target.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mvn", "-B", "-q", "-f", str(pom_path()), f"-Dkafka.version={version or kafka_version()}",
        "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={target}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = result.stdout[-4000:] + result.stderr[-4000:]
        raise BrokerError(f"mvn failed ({result.returncode}):\n{output}")
    marker.touch()
    return target


def new_cluster_id() -> str:
    """The 22-character URL-safe base64 form Kafka's own `random-uuid` prints (docs/reference/streaming.md §1.2).

    Never one starting with '-': the storage tool would read it as an option (1 start in 64).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(data_dir: Path, port: int, controller_port: int, partitions: int = 1) -> str:
    # Single-node overrides: replication factors and the transaction log's min ISR default to 3/2,
    # which a one-node cluster cannot satisfy; the 3 s initial rebalance delay slows every first
    # group join (docs/reference/streaming.md §1.3).
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={data_dir / 'data'}",
        f"num.partitions={partitions}",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        "delete.topic.enable=true",
        "",
    ])


@dataclass
class KafkaBroker:
    """A running broker. `bootstrap` is what clients connect to."""

    port: int
    controller_port: int
    work_dir: Path
    process: subprocess.Popen[bytes]
    owns_work_dir: bool = False
    #: The JVM options it was started with (None: the tests' small heap); a restart reuses them.
    jvm_options: tuple[str, ...] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "broker.log"

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no broker log)"

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a clean controlled shutdown), SIGKILL after `timeout`; idempotent."""
        stop_process(self.process, timeout)
        if self.owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def kill(self) -> None:
        """Crash the broker (SIGKILL), as a test of what happens when Kafka vanishes."""
        kill_process(self.process)


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise BrokerError("no java on PATH and JAVA_HOME unset: the Kafka broker needs a JDK 17+")
    return found


def start_broker(
    work_dir: Path | None = None,
    *,
    port: int | None = None,
    controller_port: int | None = None,
    heap: str = "512m",
    startup_timeout: float = 90.0,
    partitions: int = 1,
    jvm_options: tuple[str, ...] | None = None,
) -> KafkaBroker:
    """Format fresh KRaft storage and start a broker; returns once it serves metadata. ``jvm_options`` replace
    the heap and GC options (DEPLOYED_JVM_OPTIONS: a released broker's)."""
    jars = ensure_jars()
    owns = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="kmsync-kafka-")) if work_dir is None else work_dir
    work.mkdir(parents=True, exist_ok=True)
    if (work / "data").exists():  # leftovers of an earlier run never leak into this one
        shutil.rmtree(work / "data")
    port = port or free_port()
    controller_port = controller_port or free_port()
    props = work / "server.properties"
    props.write_text(server_properties(work, port, controller_port, partitions))
    log4j = work / "log4j.properties"
    log4j.write_text(LOG4J_PROPERTIES)
    classpath = f"{jars}/*"
    log_opt = f"-Dlog4j.configuration=file:{log4j}"
    fmt = subprocess.run(
        [_java(), log_opt, "-cp", classpath, "kafka.tools.StorageTool", "format",
         "-t", new_cluster_id(), "-c", str(props), "-g"],
        capture_output=True, text=True, check=False,
    )
    if fmt.returncode != 0:
        raise BrokerError(f"formatting KRaft storage failed:\n{fmt.stdout}{fmt.stderr}")
    (work / "broker.log").write_bytes(b"")  # a fresh broker, a fresh log
    broker = KafkaBroker(port, controller_port, work, _launch(work, jars, heap, jvm_options), owns, jvm_options)
    try:
        _wait_until_ready(broker, startup_timeout)
    except BaseException:
        broker.stop(timeout=5)
        raise
    return broker


def _launch(work: Path, jars: Path, heap: str, jvm_options: tuple[str, ...] | None = None) -> subprocess.Popen[bytes]:
    """Start the broker JVM on the server.properties and storage already in `work`."""
    log_opt = f"-Dlog4j.configuration=file:{work / 'log4j.properties'}"
    jvm = list(jvm_options) if jvm_options is not None else [
        "-Xms128m", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]
    with (work / "broker.log").open("ab") as log_file:  # the child keeps its own descriptor
        return subprocess.Popen(
            [_java(), *jvm, log_opt, "-cp", f"{jars}/*", "kafka.Kafka", str(work / "server.properties")],
            stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )


def restart_broker(broker: KafkaBroker, *, heap: str = "512m", startup_timeout: float = 90.0,
                   crash: bool = True) -> None:
    """Stop the broker (SIGKILL when `crash`, else a controlled shutdown) and start it again on the
    same ports and data directory, as an operator's restart or a crashed pod would; returns once it
    serves metadata again. Clients see their connections drop and must reconnect."""
    if crash:
        broker.kill()
    else:
        owns, broker.owns_work_dir = broker.owns_work_dir, False
        broker.stop()
        broker.owns_work_dir = owns
    broker.process = _launch(broker.work_dir, ensure_jars(), heap, broker.jvm_options)
    try:
        _wait_until_ready(broker, startup_timeout, since=broker.log_path.stat().st_size)
    except BaseException:
        broker.stop(timeout=5)
        raise


def _wait_until_ready(broker: KafkaBroker, timeout: float, since: int = 0) -> None:
    """Until the JVM logged that it started (after byte `since` of its log) and serves metadata."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not broker.is_running():
            raise BrokerError(
                f"the Kafka JVM exited with {broker.process.returncode} before it was ready; "
                f"its log:\n{broker.log_tail()}"
            )
        with broker.log_path.open("rb") as log:
            log.seek(since)
            started = STARTED_LINE.encode() in log.read()
        if started and _port_open(broker.port):
            if _serves_metadata(broker.bootstrap):
                return
        time.sleep(0.2)  # polling a child process's readiness; not test synchronisation
    raise BrokerError(f"the broker was not ready after {timeout:.0f}s; its log:\n{broker.log_tail()}")


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _serves_metadata(bootstrap: str) -> bool:
    """A real metadata request through aiokafka, run in its own thread and event loop."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    ok: list[bool] = []

    async def probe() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.list_topics()
            ok.append(True)
        finally:
            await admin.close()

    def run() -> None:
        with contextlib.suppress(Exception):
            asyncio.run(probe())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=15)
    return bool(ok)


__all__ = [
    "BrokerError", "KafkaBroker", "die_with_parent", "ensure_jars", "free_port", "kafka_version", "libs_dir",
    "pom_path", "repository_root", "restart_broker", "server_properties", "start_broker",
]
