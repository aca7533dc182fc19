"""Apache Kafka in KRaft mode, one combined broker+controller node, run on the JDK from Maven jars.

Maven resolves the official jars into ~/.m2 once; the classpath is cached in the data folder and
reused while every jar on it exists. Storage is formatted once (meta.properties marks it).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from streams.devstack.part import Part
from streams.devstack.process import HOST, StackError, port_open, spawn

__all__ = ["KafkaPart"]

LOG4J_VERSION = "2.24.3"
INSTALL_HINT = (
    "Install a JDK 17+ and Maven (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless maven`), or set "
    "KAFKA_BOOTSTRAP_SERVERS to a running broker (docker-compose.kafka.yml has one)."
)

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.agentstream</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
{log4j}
  </dependencies>
</project>
"""
LOG4J_DEP = (
    "    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>{a}</artifactId>"
    "<version>{v}</version></dependency>"
)


def new_cluster_id() -> str:
    """A KRaft cluster id: a uuid4's 16 bytes in url-safe base64 without padding (22 characters).

    Never one that starts with "-": the storage tool would read it as an option (1 start in 64 failed).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def java_command() -> str:
    """The `java` to run ($JAVA_HOME first), checked to be version 17 or newer."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").exists() else None
    java = java or shutil.which("java")
    if java is None:
        raise StackError(f"Kafka needs a Java runtime (17+) but `java` was not found. {INSTALL_HINT}")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = int(match.group(1)) if match else 0
    if match and major == 1 and match.group(2):
        major = int(match.group(2))  # "1.8.0" is Java 8
    if major < 17:
        raise StackError(f"Kafka 4 needs Java 17 or newer; {java} is version {major or 'unknown'}. {INSTALL_HINT}")
    return java


class KafkaPart(Part):
    """The Kafka broker of the local stack (client port `kafka_port`, controller `kafka_controller_port`)."""

    name = "kafka"
    url_env = "KAFKA_BOOTSTRAP_SERVERS"
    ready_timeout = 90.0

    @property
    def external(self) -> str | None:
        return self.settings.kafka_bootstrap_servers

    @property
    def address(self) -> str:
        return f"{HOST}:{self.settings.kafka_port}"

    def ports(self) -> dict[int, str]:
        return {
            self.settings.kafka_port: "AGENTSTREAM_KAFKA_PORT",
            self.settings.kafka_controller_port: "AGENTSTREAM_KAFKA_CONTROLLER_PORT",
        }

    def classpath(self) -> str:
        """The broker's classpath, resolved by Maven once and reused while all its jars exist."""
        version = self.settings.kafka_version
        folder = self.dir / "jars" / version
        cp_file = folder / "classpath.txt"
        if cp_file.exists():
            cp = cp_file.read_text().strip()
            if cp and all(Path(jar).exists() for jar in cp.split(os.pathsep)):
                return cp
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError(f"Kafka's jars come from Maven Central but `mvn` was not found. {INSTALL_HINT}")
        folder.mkdir(parents=True, exist_ok=True)
        deps = "\n".join(
            LOG4J_DEP.format(a=a, v=LOG4J_VERSION) for a in ("log4j-api", "log4j-core", "log4j-slf4j-impl")
        )
        (folder / "pom.xml").write_text(POM.format(kafka=version, log4j=deps))
        cmd = [mvn, "-q", "-B", "dependency:build-classpath", "-Dmdep.outputFile=classpath.txt"]
        cmd.append("-Dstyle.color=never")
        out = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=900)
        if out.returncode != 0 or not cp_file.exists():
            raise StackError(
                f"Maven could not resolve org.apache.kafka:kafka_2.13:{version} (is Maven Central reachable, "
                f"is the version right? AGENTSTREAM_KAFKA_VERSION). Maven said:\n"
                + "\n".join((out.stdout + out.stderr).strip().splitlines()[-20:])
            )
        return cp_file.read_text().strip()

    def write_properties(self) -> Path:
        """server.properties for one loopback node; rewritten each start so port changes apply."""
        port, ctl = self.settings.kafka_port, self.settings.kafka_controller_port
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{HOST}:{ctl}",
            "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{ctl}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{ctl}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.dir / "data"),
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "offsets.topic.num.partitions": "4",
        }
        path = self.dir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
        return path

    def launch(self) -> int:
        java = java_command()
        cp = self.classpath()
        props = self.write_properties()
        if not (self.dir / "data" / "meta.properties").exists():
            self._format(java, cp, props)
        log4j = Path(__file__).with_name("log4j2.yaml")
        heap = self.settings.kafka_heap
        cmd = [java, f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
        cmd += ["-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}"]
        cmd += [f"-Dkafka.logs.dir={self.dir}", "-cp", cp, "kafka.Kafka", str(props)]
        return spawn(cmd, self.log_file, cwd=self.dir)

    def _format(self, java: str, cp: str, props: Path) -> None:
        """Format the storage of a new node."""
        cmd = [java, "-cp", cp, "kafka.tools.StorageTool", "format", "-t", new_cluster_id()]
        cmd += ["-c", str(props), "--standalone"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode == 0:
            return
        tail = f"{out.stdout}{out.stderr}".strip()[-3000:]
        raise StackError(f"formatting Kafka storage failed (exit {out.returncode}): {' '.join(cmd)}\n{tail}")

    def ready(self) -> bool:
        """Port open and a metadata request lists a broker (so the broker is unfenced, not just bound)."""
        if not port_open(self.settings.kafka_port):
            return False
        with ThreadPoolExecutor(1) as pool:  # own thread: up() may be called inside a running loop
            return pool.submit(asyncio.run, self._metadata_has_broker()).result(timeout=15)

    async def _metadata_has_broker(self) -> bool:
        from aiokafka import AIOKafkaClient

        client = AIOKafkaClient(bootstrap_servers=self.address, request_timeout_ms=5000)
        try:
            await client.bootstrap()
            return bool(client.cluster.brokers())
        finally:
            await client.close()
