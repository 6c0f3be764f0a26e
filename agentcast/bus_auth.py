"""Who may do what on the bus: one account, five users, least-privilege permissions, as data.

Everything the server enforces is written here once and rendered into the
nats-server `accounts { ... }` block: the embedded server of `agentcast up`
gets it with literal passwords, `deploy/nats/accounts.conf` with
`$AGENTCAST_<ROLE>_PASSWORD` placeholders (a test keeps that file equal to
`render_accounts()`).

A role's grant names every subject it publishes to, JetStream API requests
included (`$JS.API.<op>.<stream>[.<consumer>]`), so a permission is a list of
the streams, consumers and buckets it touches:

- nobody publishes on `agentcast.live.>`: only the stream's republish does,
  so a live message is a stored event (the gateway trusts them for that);
- roles create the streams and buckets they need (idempotently) but never
  update, purge or delete them: an update can cut retention to nothing, as
  bad as a delete. `ensure_streams` only updates as admin (`agentcast up`
  connects as admin first, so it applies changed settings) and otherwise
  warns about a stream that differs from the settings;
- each role subscribes to its own inbox prefix only (`_INBOX_<role>.>`), so
  replies to one role (JetStream answers, acks, control replies) are
  invisible to the others.

When a role starts to use a new stream, consumer, bucket or subject, its grant
here must name it, and `deploy/nats/accounts.conf` be rendered again
(`python -m agentcast.bus_auth > deploy/nats/accounts.conf`): the tests run
every role with its own user and fail on any "Publish Violation" or
"Subscription Violation" in the server log. Durable names other than the
defaults (settings `archive_consumer`, `metrics_consumer`) are not granted:
only admin may use them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from agentcast.subjects import (
    APP_ALL,
    APP_LIVE_ALL,
    APP_META_ALL,
    APP_STREAM,
    CTL_PREFIX,
    EVENTS_ALL,
    EVENTS_STREAM,
    LIVE_ALL,
    PROGRESS_PREFIX,
    REVOKED_BUCKET,
    RUNS_REJECTED,
    RUNS_STREAM,
    RUNS_SUBMIT,
    SESSIONS_BUCKET,
)

ACCOUNT: Final = "AGENTCAST"
ROLES: Final = ("admin", "gateway", "worker", "archiver", "metrics")

# Names other modules own; repeated here because permissions are the one place
# that must list every resource (roles never import each other).
WORKERS_DURABLE: Final = "agentcast-workers"
ARCHIVE_DURABLE: Final = "agentcast-archiver"
METRICS_DURABLE: Final = "agentcast-metrics"
LEASES_BUCKET: Final = "agentcast_leases"
METRICS_LEASES_BUCKET: Final = "agentcast_metrics_leases"
PROGRESS_STATE_BUCKET: Final = "agentcast_progress"
WORKERS_BUCKET: Final = "agentcast_workers"
RUNNING_BUCKET: Final = "agentcast_running"
TRANSCRIPTS_STORE: Final = "agentcast_transcripts"
STREAMS_BUCKET: Final = "agentcast_streams"
"""Open streams per token jti, by gateway (gateway/slots.py), and its live gateways:"""
GATEWAYS_BUCKET: Final = "agentcast_gateways"
CHECKPOINTS_STREAM: Final = "AGENTCAST_CHECKPOINTS"
"""The archive checkpoints' witness (consumers/archive/witness.py): archivers append, admin verifies."""
CHECKPOINTS_ALL: Final = "agentcast.checkpoints.>"
MAX_ARCHIVE_PARTITIONS: Final = 16
"""Partitioned archive streams (AGENTCAST_ARCHIVE_P2..P16) the archiver may use."""

_API: Final = "$JS.API"


@dataclass(frozen=True)
class Grant:
    """What one user may publish and subscribe to."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    publish_deny: tuple[str, ...] = (LIVE_ALL, APP_LIVE_ALL)
    allow_responses: bool = False
    """May answer requests it received (the worker answers control requests)."""


def inbox_prefix(user: str | None) -> str:
    """The inbox prefix a user's connection must use (`_INBOX_<user>`), `_INBOX` without a user."""
    return f"_INBOX_{user}" if user else "_INBOX"


def password_env(role: str) -> str:
    """The variable the deployed configs read a role's password from."""
    return f"AGENTCAST_{role.upper()}_PASSWORD"


# -- JetStream API subjects, by what they allow --------------------------------------


def _stream(name: str) -> list[str]:
    """Look a stream up and create it if missing (never update, purge or delete)."""
    return [f"{_API}.STREAM.INFO.{name}", f"{_API}.STREAM.CREATE.{name}"]


def _direct_get(name: str) -> list[str]:
    """Read stored messages by sequence or last-by-subject (direct and plain gets)."""
    return [
        f"{_API}.DIRECT.GET.{name}",
        f"{_API}.DIRECT.GET.{name}.>",
        f"{_API}.STREAM.MSG.GET.{name}",
    ]


def _durable(stream: str, durable: str) -> list[str]:
    """Own one durable consumer: look up, create (any API form), recreate, pull, ack."""
    return [
        f"{_API}.CONSUMER.INFO.{stream}.{durable}",
        f"{_API}.CONSUMER.CREATE.{stream}.{durable}",
        f"{_API}.CONSUMER.CREATE.{stream}.{durable}.>",
        f"{_API}.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
        f"{_API}.CONSUMER.DELETE.{stream}.{durable}",
        f"{_API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    ]


def _ephemeral(stream: str) -> list[str]:
    """Unnamed (ordered) consumers, as KV watches use, with their flow-control replies.

    The server refuses a durable name on this subject, so it grants no durable.
    nats-py looks its (randomly named) consumer up: info on any consumer of the stream.
    """
    return [
        f"{_API}.CONSUMER.CREATE.{stream}",
        f"{_API}.CONSUMER.INFO.{stream}.*",
        f"$JS.FC.{stream}.>",
    ]


def _kv(bucket: str, *, write: bool, watch: bool = True) -> list[str]:
    stream = f"KV_{bucket}"
    found = [*_stream(stream), *_direct_get(stream)]
    if watch:
        found += _ephemeral(stream)
    if write:
        found.append(f"$KV.{bucket}.>")
    return found


def _object_store(bucket: str) -> list[str]:
    # nats-py's put() purges an object's previous chunks by subject, and get()
    # finds the stream by subject name: both are part of using the store.
    stream = f"OBJ_{bucket}"
    return [
        *_stream(stream),
        *_direct_get(stream),
        *_ephemeral(stream),
        f"{_API}.STREAM.PURGE.{stream}",
        f"{_API}.STREAM.NAMES",
        f"$O.{bucket}.>",
    ]


def _app_streams() -> list[str]:
    """The Durable Streams facade (gateway/durable/): the gateway stores, reads and deletes
    application streams (a delete purges one stream's subjects, never the whole stream)."""
    return [
        *_stream(APP_STREAM),
        *_direct_get(APP_STREAM),
        f"{_API}.STREAM.PURGE.{APP_STREAM}",
        APP_ALL,
        APP_META_ALL,
    ]


def _contract_streams() -> list[str]:
    """`ensure_streams` (every role runs it): the events and runs streams, the sessions bucket."""
    return [*_stream(EVENTS_STREAM), *_stream(RUNS_STREAM), *_stream(f"KV_{SESSIONS_BUCKET}")]


def _archive_partitions() -> list[str]:
    """The sourced partition streams (consumers/archive/partition.py): archivers and metrics."""
    found: list[str] = []
    for n in range(2, MAX_ARCHIVE_PARTITIONS + 1):
        stream = f"AGENTCAST_ARCHIVE_P{n}"
        found += _stream(stream)
        # Consumers `<durable>-<i>of<n>`: no subject wildcard matches part of a
        # token, and nobody else reads these streams, so any consumer on them.
        found += [
            f"{_API}.CONSUMER.INFO.{stream}.*",
            f"{_API}.CONSUMER.CREATE.{stream}.*",
            f"{_API}.CONSUMER.CREATE.{stream}.*.>",
            f"{_API}.CONSUMER.DURABLE.CREATE.{stream}.*",
            f"{_API}.CONSUMER.DELETE.{stream}.*",
            f"{_API}.CONSUMER.MSG.NEXT.{stream}.*",
            f"$JS.ACK.{stream}.>",
        ]
    return found


def grants(
    *, archive_durable: str = ARCHIVE_DURABLE, metrics_durable: str = METRICS_DURABLE
) -> dict[str, Grant]:
    """Every user's permissions (durable names follow the settings of the same name)."""
    ctl = f"{CTL_PREFIX}.*"
    leases = _kv(LEASES_BUCKET, write=True)
    return {
        "admin": Grant(publish=(">",), subscribe=(">",)),
        "gateway": Grant(
            publish=_unique(
                _contract_streams(),
                _direct_get(EVENTS_STREAM),
                _kv(SESSIONS_BUCKET, write=False),
                _app_streams(),
                _kv(STREAMS_BUCKET, write=True, watch=False),
                _kv(GATEWAYS_BUCKET, write=True, watch=False),
                _kv(REVOKED_BUCKET, write=False),
                [RUNS_SUBMIT, ctl],
            ),
            subscribe=(
                f"{inbox_prefix('gateway')}.>",
                LIVE_ALL,
                APP_LIVE_ALL,
                f"{PROGRESS_PREFIX}.>",
            ),
            publish_deny=(EVENTS_ALL, LIVE_ALL, APP_LIVE_ALL),
        ),
        "worker": Grant(
            publish=_unique(
                _contract_streams(),
                _direct_get(EVENTS_STREAM),
                _durable(RUNS_STREAM, WORKERS_DURABLE),
                _kv(WORKERS_BUCKET, write=True),
                _kv(RUNNING_BUCKET, write=True),
                _object_store(TRANSCRIPTS_STORE),
                [EVENTS_ALL, RUNS_REJECTED, ctl],
            ),
            subscribe=(f"{inbox_prefix('worker')}.>", ctl),
            allow_responses=True,
        ),
        "archiver": Grant(
            publish=_unique(
                _contract_streams(),
                _durable(EVENTS_STREAM, archive_durable),
                _archive_partitions(),
                leases,
                _stream(CHECKPOINTS_STREAM),
                _direct_get(CHECKPOINTS_STREAM),
                [CHECKPOINTS_ALL],
            ),
            subscribe=(f"{inbox_prefix('archiver')}.>",),
            publish_deny=(EVENTS_ALL, LIVE_ALL, APP_LIVE_ALL),
        ),
        "metrics": Grant(
            publish=_unique(
                _contract_streams(),
                _durable(EVENTS_STREAM, metrics_durable),
                _archive_partitions(),
                _kv(SESSIONS_BUCKET, write=True),
                _kv(PROGRESS_STATE_BUCKET, write=True),
                _kv(METRICS_LEASES_BUCKET, write=True),
                [f"{PROGRESS_PREFIX}.>"],
            ),
            subscribe=(f"{inbox_prefix('metrics')}.>",),
            publish_deny=(EVENTS_ALL, LIVE_ALL, APP_LIVE_ALL),
        ),
    }


def _unique(*parts: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s for part in parts for s in part))


# -- rendering -----------------------------------------------------------------------


def render_accounts(
    passwords: Mapping[str, str] | None = None, table: Mapping[str, Grant] | None = None
) -> str:
    """The nats-server `accounts` block; without `passwords`, `$AGENTCAST_<ROLE>_PASSWORD`.

    No `no_auth_user`: a connection without credentials is refused.
    """
    lines = [
        "# Rendered from agentcast/bus_auth.py (`python -m agentcast.bus_auth`): edit that, not this.",
        "accounts {",
        f"  {ACCOUNT} {{",
        "    jetstream: enabled",
        "    users: [",
    ]
    for role, grant in (table or grants()).items():
        secret = json.dumps(passwords[role]) if passwords else f"${password_env(role)}"
        lines += ["      {", f"        user: {role}", f"        password: {secret}"]
        lines += ["        permissions: {", "          publish: {"]
        lines += _list("allow", grant.publish, 12) + _list("deny", grant.publish_deny, 12)
        lines += ["          }", "          subscribe: {"]
        lines += _list("allow", grant.subscribe, 12) + ["          }"]
        if grant.allow_responses:
            lines.append("          allow_responses: true")
        lines += ["        }", "      }"]
    lines += ["    ]", "  }", "}", ""]
    return "\n".join(lines)


def _list(key: str, subjects: Iterable[str], indent: int) -> list[str]:
    pad = " " * indent
    # Quoted: a bare `$JS...` would be read as a variable reference.
    return [f"{pad}{key}: [", *(f"{pad}  {json.dumps(s)}" for s in subjects), f"{pad}]"]


if __name__ == "__main__":
    print(render_accounts(), end="")
