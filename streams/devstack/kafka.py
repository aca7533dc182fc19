"""Apache Kafka in KRaft mode, combined broker+controller nodes, run on the JDK from Maven jars.

Maven resolves the official jars into ~/.m2 once; the classpath is cached in the data folder and
reused while every jar on it exists. Storage is formatted once (meta.properties marks it).

One node (the default) has a dynamic quorum of itself. N nodes (AGENTSTREAM_KAFKA_BROKERS) are one
cluster with a static quorum of all N controllers, every node formatted with the same cluster id;
node i listens on kafka_port + 2i and kafka_controller_port + 2i (Settings.kafka_nodes).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from streams.devstack.part import Part
from streams.devstack.process import HOST, StackError, port_open, spawn
from streams.devstack.secure import SecureMaterial
from streams.settings import Settings

__all__ = ["KafkaPart", "replication_props"]

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


def replication_props(brokers: int) -> dict[str, str]:
    """Replication of the broker's defaults and internal topics: min(3, nodes) replicas; with 3, a
    write with acks=all needs 2 in sync, so one node may be down and nothing acknowledged is lost."""
    replicas = min(3, brokers)
    min_isr = "2" if replicas >= 3 else "1"
    return {
        "default.replication.factor": str(replicas),
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": min_isr,
    }


class KafkaPart(Part):
    """One Kafka node of the local stack: `kafka` alone, or `kafka-<node>` of a cluster of N."""

    name = "kafka"
    url_env = "KAFKA_BOOTSTRAP_SERVERS"
    ready_timeout = 120.0

    def __init__(self, settings: Settings, root: Path, node: int = 1) -> None:
        self.node = node  # the KRaft node.id, 1-based
        self.cluster = settings.kafka_brokers > 1
        self.name = f"kafka-{node}" if self.cluster else "kafka"  # type: ignore[misc]
        self.client_port, self.controller_port = settings.kafka_nodes[node - 1]
        super().__init__(settings, root)
        self.cluster_id_file = root / "kafka-cluster-id"
        self.secure = SecureMaterial(root)  # `up --secure` made it: SASL_SSL only, ACLs (streams/devstack/secure.py)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.client_port}"

    def ports(self) -> dict[int, str]:
        shift = f" (node {self.node} uses it + {2 * (self.node - 1)})" if self.node > 1 else ""
        return {
            self.client_port: f"AGENTSTREAM_KAFKA_PORT{shift}",
            self.controller_port: f"AGENTSTREAM_KAFKA_CONTROLLER_PORT{shift}",
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
        port, ctl = self.client_port, self.controller_port
        if self.cluster:  # a static quorum of every node's controller
            voters = ",".join(f"{i + 1}@{HOST}:{c}" for i, (_, c) in enumerate(self.settings.kafka_nodes))
            quorum = {"controller.quorum.voters": voters}
        else:
            quorum = {"controller.quorum.bootstrap.servers": f"{HOST}:{ctl}"}
        lines = {
            "process.roles": "broker,controller",
            "node.id": str(self.node),
            **quorum,
            "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{ctl}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{ctl}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            **(self.secure.broker_properties(port, ctl, HOST) if self.secure.enabled else {}),
            "log.dirs": str(self.dir / "data"),
            **replication_props(self.settings.kafka_brokers),
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

    def _cluster_id(self) -> str:
        """A new id for a lone node; the cluster's shared id (made by the first node to need it) for N."""
        if not self.cluster:
            return new_cluster_id()
        try:
            with self.cluster_id_file.open("x") as out:  # exclusive create: nodes start in parallel
                out.write(new_cluster_id())
        except FileExistsError:
            pass
        for _ in range(50):  # the creator may not have written it yet
            cluster_id = self.cluster_id_file.read_text().strip()
            if cluster_id:
                return cluster_id
            time.sleep(0.01)
        raise StackError(f"{self.cluster_id_file} is empty: remove it and the kafka-* folders to start afresh")

    def _format(self, java: str, cp: str, props: Path) -> None:
        """Format the storage of a new node (a lone node is its own quorum: --standalone)."""
        cmd = [java, "-cp", cp, "kafka.tools.StorageTool", "format", "-t", self._cluster_id()]
        cmd += ["-c", str(props)] + ([] if self.cluster else ["--standalone"])
        if self.secure.enabled:
            cmd += self.secure.format_arguments()
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode == 0:
            return
        tail = f"{out.stdout}{out.stderr}".strip()[-3000:]
        raise StackError(f"formatting Kafka storage failed (exit {out.returncode}): {' '.join(cmd)}\n{tail}")

    def ready(self) -> bool:
        """Port open and its metadata lists this node (so the broker is unfenced, not just bound)."""
        if not port_open(self.client_port):
            return False
        with ThreadPoolExecutor(1) as pool:  # own thread: up() may be called inside a running loop
            return pool.submit(asyncio.run, self._metadata_has_node()).result(timeout=15)

    def client_options(self) -> dict[str, Any]:
        """How the stack itself connects: plaintext, or as the admin principal over SASL_SSL."""
        if not self.secure.enabled:
            return {}
        from streams.kafka import connection_options  # the one place connection options are made

        options = connection_options(self.secure.settings_for("admin", self.settings), "stack")
        return {k: v for k, v in options.items() if k not in ("bootstrap_servers", "client_id")}

    async def _metadata_has_node(self) -> bool:
        from aiokafka import AIOKafkaClient

        client = AIOKafkaClient(bootstrap_servers=self.address, request_timeout_ms=5000, **self.client_options())
        try:
            await client.bootstrap()
            return self.node in {broker.nodeId for broker in client.cluster.brokers()}
        finally:
            await client.close()
