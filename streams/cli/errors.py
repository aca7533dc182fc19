"""How a command ends when something fails: one or two lines naming what and what to do, exit code 1.

Expected failures (a part of the stack not reachable, a port taken, a bad file, a missing folder, an
unknown name) are explained by `explain`; anything else is a bug and says so in one line. The Python
traceback is printed only with `agentstream --debug`.
"""

from __future__ import annotations

import errno

__all__ = ["explain", "message_for"]

_STACK_HINT = "start the local stack with `agentstream up`"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _os_error(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else ""
    what = exc.strerror or _first_line(exc)
    hint = ""
    if exc.errno == errno.ENOENT:
        hint = ": create its folder first, or give another path"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = ": check its permissions, or give another path"
    elif exc.errno == errno.EISDIR:
        hint = ": give a file name, not a folder"
    return f"{where}: {what}{hint}" if where else f"{what}{hint}"


def explain(exc: BaseException) -> str | None:
    """The message for an expected failure, or None when `exc` is not one (a bug)."""
    import psycopg
    from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError
    from pydantic import ValidationError
    from redis.exceptions import ConnectionError as RedisConnectionError

    from agents.models import ConfigError
    from agents.prompt_registry import RegistryError
    from agents.prompt_templates import TemplateRenderError
    from agents.tools.pool import ServerStartError
    from sinks.base import TierUnavailable
    from streams.devstack import StackError
    from streams.kafka import KafkaSecurityError, KafkaUnavailable

    if isinstance(exc, BaseExceptionGroup):
        found = [m for m in (explain(e) for e in exc.exceptions) if m]
        return found[0] if found else None
    if isinstance(exc, KafkaUnavailable | KafkaSecurityError | StackError | ConfigError | RegistryError
                  | TemplateRenderError | ServerStartError):
        return str(exc)
    if isinstance(exc, UnknownTopicOrPartitionError):
        return ("a topic this command needs does not exist: `agentstream up` creates the topics "
                "(check AGENTSTREAM_TOPIC_PREFIX)")
    if isinstance(exc, KafkaError) and "Authorization" in type(exc).__name__:
        return (f"Kafka refused this principal ({type(exc).__name__}: {_first_line(exc)}): its ACLs do not allow "
                "it; a tenant may write only its own task topic (AGENTSTREAM_TENANT) and read its own results")
    if isinstance(exc, KafkaError):
        return f"Kafka refused the request ({type(exc).__name__}: {_first_line(exc)}); is the cluster healthy? " \
               "`agentstream status`"
    if isinstance(exc, psycopg.OperationalError):
        return f"PostgreSQL is not reachable ({_first_line(exc)}): {_STACK_HINT}, or set DATABASE_URL"
    if isinstance(exc, TierUnavailable):
        return f"{_first_line(exc)}: {_STACK_HINT}, or set the tier's URL"
    if isinstance(exc, ValidationError):
        return f"bad setting: {exc}"
    if isinstance(exc, ConnectionError | RedisConnectionError):  # refused connections
        return f"{_first_line(exc)}: {_STACK_HINT}"
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, ValueError | LookupError):  # the project's own checks say what is wrong in their message
        return _first_line(exc) if len(str(exc)) > 300 else str(exc)
    if exc.__cause__ is not None and exc.__cause__ is not exc:
        return explain(exc.__cause__)
    return None


def message_for(exc: BaseException) -> str:
    """One or two lines for the terminal: the explanation, or the bug's one line and how to see more."""
    explained = explain(exc)
    if explained is not None:
        return explained
    return (f"unexpected {type(exc).__name__}: {_first_line(exc)}\n"
            "(a bug: run the command again as `agentstream --debug ...` for the traceback, and report it)")
