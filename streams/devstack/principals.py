"""Principals on the running secured local Kafka: SCRAM logins, ACLs and a tenant's own topics.

Sent as the admin principal with aiokafka's protocol classes (its admin client has no ACL or SCRAM calls);
`AlterUserScramCredentials` is declared here, the request the Java tools send. The password never leaves
this process in clear: only its salted SCRAM-SHA-512 form is sent, and nothing is put on a command line.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, TypeAlias

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactBytes, CompactString, Int8, Int16, Int32, Schema, TaggedFields

from streams import kafka
from streams.admin import ensure_topics
from streams.devstack.process import StackError
from streams.devstack.secure import SecureMaterial, acl_bindings
from streams.settings import Settings
from streams.topics import TopicSpec, tenant_result_topic, tenant_task_topic

__all__ = ["add_tenant", "grant_worker", "set_up"]

_SCRAM_SHA_512 = 2  # the mechanism's id in AlterUserScramCredentials
_ITERATIONS = 8192
_ALLOW, _ANY_HOST = 3, "*"


class _AlterUserScramCredentialsResponse_v0(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(("throttle_time_ms", Int32),
                    ("results", CompactArray(("user", CompactString("utf-8")), ("error_code", Int16),
                                             ("error_message", CompactString("utf-8")), ("tags", TaggedFields))),
                    ("tags", TaggedFields))


class _AlterUserScramCredentialsRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(("deletions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8),
                                               ("tags", TaggedFields))),
                    ("upsertions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8),
                                                ("iterations", Int32), ("salt", CompactBytes),
                                                ("salted_password", CompactBytes), ("tags", TaggedFields))),
                    ("tags", TaggedFields))


_ScramStruct: TypeAlias = _AlterUserScramCredentialsRequest_v0


class _AlterUserScramCredentials(Request[_ScramStruct]):
    API_KEY = 51

    def __init__(self, user: str, password: str) -> None:
        self.user, self.salt = user, os.urandom(32)
        self.salted = hashlib.pbkdf2_hmac("sha512", password.encode(), self.salt, _ITERATIONS)

    def build(self, request_struct_class: type[_ScramStruct]) -> _ScramStruct:
        return request_struct_class([], [(self.user, _SCRAM_SHA_512, _ITERATIONS, self.salt, self.salted, {})], {})


async def _grant(admin: AIOKafkaAdminClient, principal: str, bindings: list[tuple[int, str, int, int]]) -> None:
    for resource, name, pattern, operation in bindings:
        response: Any = await admin._send_request(
            CreateAclsRequest(resource, name, pattern, f"User:{principal}", _ANY_HOST, operation, _ALLOW))
        for code, message in response.creation_responses:
            if code:
                raise StackError(f"Kafka refused the ACL {name!r} for {principal} (error {code}: {message})")


async def grant_worker(settings: Settings, material: SecureMaterial) -> None:
    """The worker principal's ACLs: every project topic and group (creating an ACL twice is harmless)."""
    admin = await _started_admin(settings, material)
    try:
        await _grant(admin, "worker", acl_bindings(settings, "worker"))
    finally:
        await admin.close()


async def add_tenant(settings: Settings, material: SecureMaterial, tenant: str) -> Path:
    """A tenant's login, its two topics and its ACLs (write its task topic, read its result topic). Idempotent:
    an existing tenant keeps its password."""
    principal = f"tenant-{tenant}"
    password = material.password(principal, create=True)
    admin = await _started_admin(settings, material)
    try:
        response: Any = await admin._send_request(_AlterUserScramCredentials(principal, password))
        for user, code, message in ((r[0], r[1], r[2]) for r in response.results):
            if code:
                raise StackError(f"Kafka refused the login of {user} (error {code}: {message})")
        await _grant(admin, principal, acl_bindings(settings, principal, tenant))
    finally:
        await admin.close()
    topics = (tenant_task_topic(settings, tenant), tenant_result_topic(settings, tenant))
    await ensure_topics(material.settings_for("admin", settings), [TopicSpec(t, settings.partitions) for t in topics])
    return material.write_env(principal, settings, {"AGENTSTREAM_TENANT": tenant})


async def _started_admin(settings: Settings, material: SecureMaterial) -> AIOKafkaAdminClient:
    admin = kafka.admin(material.settings_for("admin", settings))
    await admin.start()
    return admin


async def set_up(settings: Settings, material: SecureMaterial, tenants: list[str]) -> list[Path]:
    """After `up --secure`: the worker's ACLs, each tenant, and every principal's env file; their paths."""
    await grant_worker(settings, material)
    paths = [material.write_env("worker", settings, {"AGENTSTREAM_TENANT_TOPICS": "true"})]
    for tenant in tenants:
        paths.append(await add_tenant(settings, material, tenant))
    return paths
