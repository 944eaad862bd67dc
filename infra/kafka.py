"""A real single-node Apache Kafka (KRaft, broker+controller in one JVM) on loopback, no Docker.

Kafka's jars come from Maven Central through `mvn` (the machine has Java 17 and Maven but no
Kafka tarball mirror), are cached outside the repository, and the broker runs as a detached
`java` process whose PID is kept in a file, so `up()` is idempotent and `down()` needs no
process-name matching. Standard library only: this runs before the project's virtualenv exists.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import TextIO

from ._common import (
    HOST,
    KAFKA_CONTROLLER_PORT,
    KAFKA_PORT,
    cache_root,
    log,
    pid_alive,
    port_open,
    read_pid,
    stack_root,
    wait_for,
)

KAFKA_VERSION = "4.1.2"
SCALA_VERSION = "2.13"
# Kafka 4.1.2 depends on log4j-core 2.25.3 and on slf4j-api 1.7.36, so the SLF4J *1.x* binding
# (log4j-slf4j-impl, not log4j-slf4j2-impl) is what makes the broker log instead of SLF4J NOP.
LOG4J_VERSION = "2.25.3"
START_TIMEOUT = 120.0
READY_MARKER = "Kafka Server started"
_JVM_OPTS = [
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
]


def _libs() -> Path:
    return cache_root() / f"kafka-{KAFKA_VERSION}" / "libs"


def _state() -> Path:
    d = stack_root() / "kafka"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _locked(path: Path) -> TextIO:
    """An exclusive flock, so that two concurrent `up()` calls never start two brokers."""
    fh = open(path, "w")  # noqa: SIM115 - closed by the caller's `with`
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


def ensure_installed() -> Path:
    """Download Kafka and its runtime dependencies once; a marker file records completion."""
    libs = _libs()
    marker = libs / ".complete"
    if marker.exists():
        return libs
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"`{tool}` not found: Kafka needs Java 17+ and Maven")
    with _locked(cache_root() / f".kafka-{KAFKA_VERSION}.lock"):
        if marker.exists():
            return libs
        log(f"fetching Kafka {KAFKA_VERSION} from Maven Central (once)")
        deps = "".join(
            f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
            f"<version>{v}</version></dependency>"
            for g, a, v in [
                ("org.apache.kafka", f"kafka_{SCALA_VERSION}", KAFKA_VERSION),
                ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
                ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
            ]
        )
        pom = (
            '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0'
            "</modelVersion><groupId>local.idlewire</groupId><artifactId>kafka-libs"
            "</artifactId><version>0</version><packaging>pom</packaging>"
            f"<dependencies>{deps}</dependencies></project>"
        )
        staging = libs.with_name("libs.partial")
        shutil.rmtree(staging, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix="idlewire-kafka-pom-") as tmp:
            (Path(tmp) / "pom.xml").write_text(pom)
            mvn = ["mvn", "-q", "-B", "dependency:copy-dependencies", "-DincludeScope=runtime"]
            proc = subprocess.run(
                [*mvn, f"-DoutputDirectory={staging}"], cwd=tmp, capture_output=True, text=True
            )
        if proc.returncode != 0 or not any(staging.glob(f"kafka_{SCALA_VERSION}-*.jar")):
            raise RuntimeError(f"mvn failed to fetch Kafka:\n{(proc.stdout + proc.stderr)[-3000:]}")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)  # atomic: a half-finished download never looks installed
        marker.write_text(f"kafka_{SCALA_VERSION}:{KAFKA_VERSION} log4j:{LOG4J_VERSION}\n")
    return libs


def _write_configs(state: Path) -> tuple[Path, Path]:
    """server.properties and a log4j2 config; rewritten on every start so edits here apply.

    Static `controller.quorum.voters`: 4.1 formats that without `--standalone` (which it rejects
    together with static voters). Single-node sizes for the internal topics, and no initial
    rebalance delay: tests start consumers one after another and the 3 s default only slows them.
    """
    (state / "logs").mkdir(exist_ok=True)
    logs = state / "logs"
    props = state / "server.properties"
    props.write_text(f"""\
node.id=1
process.roles=broker,controller
listeners=PLAINTEXT://{HOST}:{KAFKA_PORT},CONTROLLER://{HOST}:{KAFKA_CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://{HOST}:{KAFKA_PORT}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
controller.quorum.voters=1@{HOST}:{KAFKA_CONTROLLER_PORT}
log.dirs={state / "data"}
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
""")
    log4j = state / "log4j2.properties"  # server.log, rolled at 20 MB, at most 3 files
    log4j.write_text(f"""\
status = warn
appender.server.type = RollingFile
appender.server.name = SERVER
appender.server.fileName = {logs / "server.log"}
appender.server.filePattern = {logs / "server.log.%i"}
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 20MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.server.ref = SERVER
logger.request.name = kafka.request.logger
logger.request.level = WARN
""")
    return props, log4j


def _java(libs: Path, log4j: Path, *args: str) -> list[str]:
    # "libs/*" is expanded by java itself, so no shell is involved.
    return ["java", *_JVM_OPTS, f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*", *args]


def _our_pid() -> int | None:
    """The broker's PID if the pid file names a live *Kafka* JVM (guards against PID reuse)."""
    pid = read_pid(_state() / "kafka.pid")
    if pid is None:
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid  # no procfs: trust the pid file
    return pid if b"kafka.Kafka" in cmdline else None


def _tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a file (all of it for 0), for readiness checks and errors."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop(pid: int, timeout: float) -> None:
    """Like `_common.stop_pid`, but reaps the JVM when it is our own child: a zombie still
    answers kill(pid, 0), so without reaping `down()` after `up()` in one process would wait
    the whole timeout and then SIGKILL a broker that had already shut down cleanly."""

    def gone() -> bool:
        with contextlib.suppress(ChildProcessError):  # not our child: its parent reaps it
            os.waitpid(pid, os.WNOHANG)
        return not pid_alive(pid)

    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        try:
            wait_for(gone, f"Kafka (pid {pid}) to exit", wait)
            return
        except RuntimeError:
            log(f"Kafka (pid {pid}) still alive after {sig.name}")


def is_running() -> bool:
    return _our_pid() is not None and port_open(KAFKA_PORT)


def _settings() -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": f"{HOST}:{KAFKA_PORT}"}


def up() -> dict[str, str]:
    """Start the broker unless it already runs; format storage on the first start only."""
    if is_running():
        return _settings()
    libs = ensure_installed()
    state = _state()
    with _locked(state / ".lock"):
        pid = _our_pid()
        if pid is not None:  # started by someone else and still coming up
            wait_for(lambda: port_open(KAFKA_PORT), f"Kafka (pid {pid})", START_TIMEOUT)
            return _settings()
        for port in (KAFKA_PORT, KAFKA_CONTROLLER_PORT):
            if port_open(port):
                raise RuntimeError(f"{HOST}:{port} is taken by a process that is not our Kafka")
        props, log4j = _write_configs(state)
        if not (state / "data" / "meta.properties").exists():
            # Same format as `StorageTool random-uuid`, without paying for a JVM start.
            cluster_id = "-"
            while cluster_id.startswith("-"):
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            log(f"formatting Kafka storage (cluster id {cluster_id})")
            fmt_args = ["format", "-t", cluster_id, "-c", str(props), "--ignore-formatted"]
            fmt = subprocess.run(
                _java(libs, log4j, "kafka.tools.StorageTool", *fmt_args),
                capture_output=True,
                text=True,
            )
            if fmt.returncode != 0:
                raise RuntimeError(f"Kafka storage format failed:\n{fmt.stdout}{fmt.stderr}")
        # A fresh server.log and kafka.out per start (the previous log kept as .prev), so the
        # readiness marker and the error tail both come from this start only.
        server_log, out = state / "logs" / "server.log", state / "kafka.out"
        if server_log.exists():
            server_log.replace(server_log.with_name("server.log.prev"))
        log(f"starting Kafka {KAFKA_VERSION} on {HOST}:{KAFKA_PORT}")
        started = time.monotonic()
        with open(out, "wb") as out_fh:
            proc = subprocess.Popen(
                _java(libs, log4j, f"-Dkafka.logs.dir={state / 'logs'}", "kafka.Kafka", str(props)),
                cwd=state,
                stdin=subprocess.DEVNULL,
                stdout=out_fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the calling shell / test session
            )
        (state / "kafka.pid").write_text(f"{proc.pid}\n")

        def ready() -> bool:
            if proc.poll() is not None:
                return True  # exited: stop waiting, reported below
            return port_open(KAFKA_PORT) and READY_MARKER in _tail(server_log, lines=0)

        try:
            wait_for(ready, "Kafka to report it started", START_TIMEOUT, interval=0.25)
            problem = None if proc.poll() is None else f"Kafka exited with {proc.returncode}"
        except RuntimeError as exc:
            problem = str(exc)
            _stop(proc.pid, timeout=10.0)
        if problem:
            raise RuntimeError(
                f"{problem}\n--- {server_log} ---\n{_tail(server_log)}\n--- {out} ---\n{_tail(out)}"
            )
        log(f"Kafka ready in {time.monotonic() - started:.1f}s (pid {proc.pid})")
    return _settings()


def down() -> None:
    """SIGTERM (controlled shutdown), SIGKILL after 60 s; data stays for the next `up()`."""
    pid = _our_pid()
    if pid is not None:
        log(f"stopping Kafka (pid {pid})")
        _stop(pid, timeout=60.0)
    (_state() / "kafka.pid").unlink(missing_ok=True)


def reset() -> None:
    """Stop the broker and delete its data, so that the next `up()` formats a fresh cluster."""
    down()
    shutil.rmtree(_state() / "data", ignore_errors=True)
