"""Tenant names, task identity, tenant-scoped memory ids, and the secured stack's principals (no broker)."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from schemas.events import DEFAULT_TENANT, normal_tenant, task_identity
from sinks.base import event_id
from sinks.vectors import vector_id
from streams.devstack.secure import BROKER_SUBJECT, SecureMaterial, acl_bindings
from streams.settings import Settings
from streams.topics import client_topics, tenant_of_topic, tenant_result_topic, tenant_task_topic


@pytest.mark.parametrize("spelling", ["acme", "ACME", " acme ", "\uff41\uff43\uff4d\uff45", "Acme\t"])
def test_spellings_of_a_tenant_are_one_tenant(spelling: str) -> None:
    assert normal_tenant(spelling) == "acme"


@pytest.mark.parametrize("name", ["acme\u200b", "acme|x", "-acme", "a" * 65, "ac me", "acme/x", "ac\u00e9me"])
def test_what_is_not_a_tenant_name_is_refused_with_the_reason(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid name"):
        normal_tenant(name)


def test_no_tenant_is_the_default_one() -> None:
    assert normal_tenant(None) == normal_tenant("") == normal_tenant("  ") == DEFAULT_TENANT


def test_a_task_is_known_by_its_id_within_its_tenant() -> None:
    assert task_identity({"task_id": "t1", "tenant": None}) == task_identity({"task_id": "t1"}) == "t1"
    assert task_identity({"task_id": "t1", "tenant": "acme"}) == "acme/t1"
    assert task_identity({"task_id": "t1", "tenant": "beta"}) != task_identity({"task_id": "t1", "tenant": "acme"})


def test_two_tenants_with_one_task_id_get_distinct_memory_ids() -> None:
    a = event_id("TaskResult", {"task_id": "t1", "tenant": "acme"})
    b = event_id("TaskResult", {"task_id": "t1", "tenant": "beta"})
    assert a == "TaskResult:acme/t1" and a != b
    assert vector_id("s", a, 0) != vector_id("s", b, 0)
    # the default tenant keeps the ids it always had (memories stored before stay where they are)
    assert event_id("TaskResult", {"task_id": "t1", "tenant": "default"}) == "TaskResult:t1"
    assert event_id("AgentOutput", {"output_id": "t1:1:1", "tenant": "acme"}) == "AgentOutput:acme/t1:1:1"


def test_tenant_topics_and_what_a_client_reads() -> None:
    s = Settings(AGENTSTREAM_TOPIC_PREFIX="p.")
    assert tenant_task_topic(s, "acme") == "p.agent.tasks.tenant.acme"
    assert tenant_of_topic(s, "p.agent.tasks.tenant.acme") == "acme" and tenant_of_topic(s, "p.agent.tasks") is None
    assert client_topics(s) == ("p.agent.tasks", ["p.agent.results", "p.agent.deadletters"])
    tenant = s.model_copy(update={"client_tenant": "acme"})
    assert client_topics(tenant) == ("p.agent.tasks.tenant.acme", [tenant_result_topic(s, "acme")])


def test_sasl_without_a_login_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="KAFKA_SASL_USERNAME"):
        Settings(KAFKA_SECURITY_PROTOCOL="SASL_SSL")
    with pytest.raises(ValueError, match="go together"):
        Settings(KAFKA_SSL_CERTFILE="/c.pem")
    masked = Settings(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="u", KAFKA_SASL_PASSWORD="pw-1").masked()
    assert masked["kafka_sasl_password"] == "***" and "pw-1" not in str(masked)


def test_a_tenant_may_write_only_its_task_topic_and_read_only_its_results() -> None:
    s = Settings()
    acme = acl_bindings(s, "tenant-acme", "acme")
    assert {(name, op) for _, name, _, op in acme} == {
        ("agent.tasks.tenant.acme", 4), ("agent.tasks.tenant.acme", 8),
        ("agent.results.tenant.acme", 3), ("agent.results.tenant.acme", 8)}
    assert all(pattern == 3 for _, _, pattern, _ in acme)  # literal names: `acme` is not a prefix of `acme2`'s
    worker = acl_bindings(s.model_copy(update={"topic_prefix": "p."}), "worker")
    assert (2, "p.", 4, 2) in worker  # ALL on the prefixed topics
    assert not any(op == 2 and kind == 4 for kind, _, _, op in worker)  # never ALL on the cluster (ACLs)


def test_secure_material_is_private_and_env_files_read_back_exactly(tmp_path) -> None:
    material = SecureMaterial(tmp_path)
    material.create()
    assert material.enabled and (tmp_path / "secure").stat().st_mode & 0o077 == 0
    assert material.credentials_file.stat().st_mode & 0o077 == 0 and material.broker_file.stat().st_mode & 0o077 == 0
    assert material.password("admin") != material.password("worker")
    before = material.password("worker")
    material.create()
    assert material.password("worker") == before  # a second `up --secure` keeps the logins
    path = material.write_env("worker", Settings(), {"AGENTSTREAM_TOPIC_PREFIX": "$(touch x)'q"})
    script = f"set -a; . {shlex.quote(str(path))}; printf %s \"$AGENTSTREAM_TOPIC_PREFIX\""
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert out == "$(touch x)'q" and not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="principal name"):
        material.password("tenant-Bad Name", create=True)


def test_the_broker_certificate_serves_loopback_and_is_signed_by_the_ca(tmp_path) -> None:
    from cryptography import x509

    material = SecureMaterial(tmp_path)
    material.create()
    certs = x509.load_pem_x509_certificates(material.broker_file.read_bytes())
    ca = x509.load_pem_x509_certificate(material.ca_file.read_bytes())
    broker = certs[0]
    assert broker.subject.rfc4514_string() == BROKER_SUBJECT and broker.issuer == ca.subject
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    broker.verify_directly_issued_by(ca)
    props = material.broker_properties(1, 2, "127.0.0.1")
    assert props["listeners"].startswith("SASL_SSL://") and "PLAINTEXT" not in props["listener.security.protocol.map"]
    assert props["allow.everyone.if.no.acl.found"] == "false"
