"""The secured local Kafka (`agentstream up --secure`): its certificates, principals, ACLs and env files.

Everything lives in `<data folder>/secure/` (mode 700): a CA and the broker's certificate made here with the
`cryptography` package, one SCRAM-SHA-512 password per principal (`credentials.json`, mode 600), and for
each principal the client settings as an env file (`worker.env`, `tenant-NAME.env`). Principals:

- `admin`: a super user; the broker's own inter-broker login, and what creates tenants and their ACLs;
- `worker`: every project topic and group (workers, sinks, the CLI an operator runs);
- `tenant-NAME`: may write only `agent.tasks.tenant.NAME` and read only `agent.results.tenant.NAME`, so a
  tenant cannot submit work charged to another (the worker takes the tenant from the topic).

The client listener speaks SASL_SSL only; the controller listener (loopback) speaks TLS and requires the
broker's own certificate (mutual TLS), whose subject is the other super user.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import shlex
from pathlib import Path

from pydantic import SecretStr

from schemas.events import TENANT_NAME
from streams.settings import Settings
from streams.topics import tenant_result_topic, tenant_task_topic

__all__ = ["BROKER_SUBJECT", "SecureMaterial", "acl_bindings"]

BROKER_SUBJECT = "CN=agentstream-broker"
MECHANISM = "SCRAM-SHA-512"


class SecureMaterial:
    """The files of a secured local Kafka under `root/secure`; `create()` makes what is missing."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "secure"
        self.ca_file = self.dir / "ca.pem"
        self.broker_file = self.dir / "broker.pem"  # private key and certificate chain, for the broker
        self.credentials_file = self.dir / "credentials.json"

    @property
    def enabled(self) -> bool:
        return self.credentials_file.exists()

    def create(self) -> None:
        """The CA, the broker certificate and the admin and worker passwords, once (later calls keep them)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        if not (self.ca_file.exists() and self.broker_file.exists()):
            ca_pem, broker_pem = _certificates()
            self.ca_file.write_text(ca_pem)
            _write_private(self.broker_file, broker_pem)
        for principal in ("admin", "worker"):
            self.password(principal, create=True)

    def credentials(self) -> dict[str, str]:
        if not self.credentials_file.exists():
            return {}
        loaded: dict[str, str] = json.loads(self.credentials_file.read_text())
        return loaded

    def password(self, principal: str, *, create: bool = False) -> str:
        """The SCRAM password of `principal` (a new random one when `create` and it has none yet)."""
        known = self.credentials()
        if principal not in known:
            if not create:
                raise KeyError(principal)
            if not TENANT_NAME.match(principal.removeprefix("tenant-")):
                raise ValueError(f"a principal name is lower-case letters, digits, '.', '_' or '-': {principal!r}")
            known[principal] = secrets.token_urlsafe(24)
            _write_private(self.credentials_file, json.dumps(known, indent=2))
        return known[principal]

    def broker_properties(self, port: int, controller_port: int, host: str) -> dict[str, str]:
        """The listener, TLS, SASL and authorizer lines of server.properties."""
        admin = self.password("admin")
        jaas = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="{admin}";'
        return {
            "listeners": f"SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "listener.security.protocol.map": "CONTROLLER:SSL,SASL_SSL:SASL_SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.broker_file),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            "listener.name.controller.ssl.client.auth": "required",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:admin;User:{BROKER_SUBJECT}",
            "allow.everyone.if.no.acl.found": "false",
        }

    def format_arguments(self) -> list[str]:
        """`--add-scram` arguments for the storage tool: the admin and worker logins exist from the start."""
        args: list[str] = []
        for principal in ("admin", "worker"):
            args += ["--add-scram", f"{MECHANISM}=[name={principal},password={self.password(principal)}]"]
        return args

    def client_settings(self, principal: str) -> dict[str, str]:
        """The environment a client of `principal` connects with (secret: written to a 600 file only)."""
        return {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": MECHANISM,
                "KAFKA_SASL_USERNAME": principal, "KAFKA_SASL_PASSWORD": self.password(principal),
                "KAFKA_SSL_CAFILE": str(self.ca_file)}

    def settings_for(self, principal: str, settings: Settings) -> Settings:
        """`settings` as `principal` connects (the stack's own admin calls, tests)."""
        env = self.client_settings(principal)
        return settings.model_copy(update={
            "kafka_security_protocol": env["KAFKA_SECURITY_PROTOCOL"], "kafka_sasl_mechanism": MECHANISM,
            "kafka_sasl_username": principal, "kafka_sasl_password": SecretStr(env["KAFKA_SASL_PASSWORD"]),
            "kafka_ssl_cafile": self.ca_file})

    def write_env(self, principal: str, settings: Settings, extra: dict[str, str] | None = None) -> Path:
        """`secure/<principal>.env`: the settings a process of `principal` needs, to `source` or `set -a; .`."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_servers, **self.client_settings(principal), **(extra or {})}
        path = self.dir / f"{principal}.env"
        _write_private(path, "".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items()))
        return path


def acl_bindings(settings: Settings, principal: str, tenant: str | None = None) -> list[tuple[int, str, int, int]]:
    """The ACLs of `principal` as (resource type, name, pattern type, operation) tuples.

    Resource types: 2 topic, 3 group, 4 cluster. Pattern types: 3 literal, 4 prefixed. Operations: 2 all,
    3 read, 4 write, 5 create, 8 describe, 10 describe configs, 12 idempotent write.
    """
    if tenant is not None:
        return [(2, tenant_task_topic(settings, tenant), 3, 4), (2, tenant_task_topic(settings, tenant), 3, 8),
                (2, tenant_result_topic(settings, tenant), 3, 3), (2, tenant_result_topic(settings, tenant), 3, 8)]
    prefix = settings.topic_prefix
    scope = (4, prefix) if prefix else (3, "*")  # pattern type, name: the project's topics, or every topic
    return [(2, scope[1], scope[0], 2), (3, "*", 3, 2),
            (4, "kafka-cluster", 3, 5), (4, "kafka-cluster", 3, 8), (4, "kafka-cluster", 3, 10),
            (4, "kafka-cluster", 3, 12)]


def _certificates() -> tuple[str, str]:
    """A new CA (PEM) and the broker's key and certificate chain (PEM), valid for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentstream local CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=825))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BROKER_SUBJECT.removeprefix("CN="))])
    names = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=825)).add_extension(names, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                  x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    ca_pem = ca.public_bytes(pem).decode()
    return ca_pem, key_pem + cert.public_bytes(pem).decode() + ca_pem


def _write_private(path: Path, text: str) -> None:
    """Write `text` readable by its owner only (created so, never world-readable for an instant)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)

