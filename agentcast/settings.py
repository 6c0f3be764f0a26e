"""Settings: built once at the edge (CLI or test) from flags and AGENTCAST_* variables.

Every field can be set by the environment variable `AGENTCAST_<FIELD>` (upper
case; lists are comma-separated) and overridden by a command-line flag.
Nothing else in agentcast reads the environment; variables that are not
agentcast's but that it must respect (ANTHROPIC_API_KEY) go through `inherited`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

ENV_PREFIX = "AGENTCAST_"
DEFAULT_TOOLS = (
    "Read",
    "Write",
    "Edit",
    "Glob",
    "Grep",
    "Bash",
    "TodoWrite",
    "TaskCreate",
    "TaskUpdate",
    "TaskGet",
    "TaskList",
    "Task",
    "Agent",
)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # -- NATS ------------------------------------------------------------------
    nats_url: str | None = None
    """Servers to use, comma-separated (`nats://a:4222,nats://b:4222`); a URL may carry
    `user:password@`. None means an embedded nats-server in `data_dir`."""
    nats_user: str = ""
    """This role's NATS user; empty: the credentials in the URL, if any."""
    nats_password: str = ""
    replicas: int = 1
    """Replicas of every stream, KV bucket and object store (3 on a 3-node cluster)."""
    nats_port: int = 0
    """Port of the embedded server; 0 picks a free one."""
    data_dir: str = ".agentcast"
    events_max_age_s: float = 7 * 24 * 3600.0
    max_msg_size: int = 1024 * 1024
    duplicate_window_s: float = 120.0
    runs_max_age_s: float = 24 * 3600.0

    # -- producer / worker -----------------------------------------------------
    concurrency: int = 4
    workspace_root: str = ""
    """Parent of the per-session workspaces; empty means `<data_dir>/workspaces`."""
    default_model: str = "claude-sonnet-4-5"
    allowed_models: list[str] = []
    """Models a request may pick; empty allows only `default_model`."""
    max_turns: int = 30
    """Upper bound on a request's max_turns (also the default)."""
    allowed_tools: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_TOOLS))
    """Tools the worker lets the agent use; a request may only narrow this list."""
    permission_mode: str = "acceptEdits"
    max_prompt_bytes: int = 64 * 1024
    publish_buffer: int = 10_000
    """Events a session may hold while JetStream is unreachable."""
    delivery_timeout_s: float = 60.0
    """How long events may wait for JetStream before the run fails loudly."""
    cancel_grace_s: float = 5.0
    session_hold_s: float = 30.0
    """How long a worker keeps answering a session's control subject after a run."""
    shutdown_grace_s: float = 20.0
    """On SIGTERM, how long in-flight runs may finish before they are cancelled."""
    anthropic_base_url: str = ""
    """Messages API the agents use (e.g. the scripted model); empty means Anthropic's."""
    claude_config_dir: str = ""
    """CLAUDE_CONFIG_DIR for the agents' CLI; empty keeps the CLI's default (~/.claude)."""
    worker_lost_after_s: float = 30.0
    """Bound on how long a dead worker's runs stay open before `run.failed` worker_lost.

    Also how long a run request a dead worker had taken waits to be redelivered.
    At least 3 s: heartbeats are renewed every twelfth of it."""

    # -- gateway -----------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    jwt_secret: str = ""
    """Empty means: read or create `<data_dir>/jwt_secret`."""
    cors_origins: list[str] = []
    heartbeat_s: float = 15.0
    client_buffer_bytes: int = 1024 * 1024
    ws_max_frame_bytes: int = 256 * 1024
    replay_batch: int = 256
    replay_concurrency: int = 32
    """Replays (catch-up from JetStream) running at once per gateway process; others wait."""
    replay_queue: int = 20_000
    """Replays that may wait for a slot per gateway process; past it: told to retry later."""
    replay_wait_s: float = 120.0
    """Longest a replay waits for a slot before it is told to retry later."""
    replay_park_at: int = 1024
    """Replays waiting for a slot before new replay requests wait parked, as their bytes
    (gateway/parking.py); 0: never."""
    nats_timeout_s: float = 1.5
    """How long an API call waits for NATS before answering 503 nats_unavailable."""
    gateway_fastpath: bool = True
    durable_long_poll_s: float = 15.0
    """How long a Durable Streams long-poll waits for data before its 204."""
    durable_sse_max_s: float = 60.0
    """A Durable Streams SSE response ends after this long (the client resumes by offset)."""
    """The Tap and the hand-off (agentcast/_internals.py); off: plain nats-py callbacks and ASGI."""

    # -- limits (SPEC "Limits"; the README's limits table) -------------------------------
    max_streams_per_token: int = 500
    """Open SSE streams plus WebSockets per token `jti`, over every gateway process; 0: no limit."""
    stream_lease_s: float = 15.0
    """A gateway process's slot records outlive it by at most this (it renews them a third as often)."""
    max_subscriptions_per_socket: int = 100
    ws_frames_per_s: float = 50.0
    """Client frames a WebSocket may send per second (bursts up to twice that)."""
    ws_flood_close_after: int = 20
    """Frames a WebSocket may have refused as `rate_limited` (plus one a second) before it is
    closed with 1008 as a flood."""
    runs_per_token_per_s: float = 2.0
    """Run submissions (HTTP and WS) per token `jti` per second, bursts up to 5x (token bucket)."""
    max_queued_runs: int = 1000
    """Run requests waiting in AGENTCAST_RUNS (its max_msgs); past it, 503 `queue_full`."""
    max_request_bytes: int = 1024 * 1024
    """Largest request body; past it, 413."""
    max_header_bytes: int = 32 * 1024
    """Largest request line plus headers; past it, 431 (413 for the body)."""
    header_timeout_s: float = 10.0
    """A connection must complete its request headers this soon after connecting (or after
    the previous response): slowloris clients are dropped then."""
    idle_timeout_s: float = 5.0
    """A keep-alive connection with no new request for this long is closed."""
    token_max_lifetime_s: float = 30 * 24 * 3600.0
    """The gateway refuses a token older than this (from `iat`), whatever its `exp` says."""

    # -- clients (agentcast run, tail) -----------------------------------------------
    gateway: str = "http://127.0.0.1:8000"
    """The gateway that client commands talk to (`AGENTCAST_GATEWAY`, `--gateway`)."""
    token: str = ""
    """Their bearer token (`AGENTCAST_TOKEN`, `--token`); empty: minted from the data dir."""

    # -- consumers ---------------------------------------------------------------
    archive_dir: str = ""
    """Empty means `<data_dir>/archive`."""
    seal_idle_s: float = 300.0
    compress_sealed: bool = False
    metrics_port: int = 0
    progress_interval_s: float = 0.25
    progress_store_s: float = 1.0
    """How often metrics stores its reducer states (and acks): what a restart replays at most."""
    archive_consumer: str = "agentcast-archiver"
    """Durable consumer name of the archiver (`-<i>of<n>` is added per partition)."""
    metrics_consumer: str = "agentcast-metrics"
    consumer_start_seq: int = 0
    """Stream sequence a consumer starts at when first created; 0: the oldest retained event."""
    consumer_batch: int = 4096
    """Events asked for per JetStream pull request (archiver and metrics)."""
    consumer_ack_wait_s: float = 30.0
    consumer_max_ack_pending: int = 200_000
    """Bounds what a consumer holds unacknowledged (in flight, in a batch, held back)."""
    gap_timeout_s: float = 60.0
    """How long events after a missing seq wait for it before the gap is recorded."""
    archive_flush_s: float = 0.1
    """Longest an archived event waits for its fsync (and so for its ack): the flush cadence."""
    archive_flush_events: int = 8192
    archive_partitions: int = 1
    archive_partition: int = 0
    archive_lease_ttl_s: float = 10.0
    metrics_lease_ttl_s: float = 10.0
    """TTL of each metrics partition's lease (the archive's is `archive_lease_ttl_s`)."""
    metrics_partitions: int = 1
    """Metrics processes sharing the sessions (as `archive_partitions` does for the archive)."""
    metrics_partition: int = 0
    archive_open_files: int = 256
    checkpoint_interval_s: float = 60.0
    """Seconds between the archiver's signed checkpoints (one more at shutdown)."""
    archive_key: str | None = None
    """Path of the archiver's Ed25519 signing key (PEM); None: `<data_dir>/archive.key`, made at first start."""
    idle_after_s: float = 60.0
    """A running session with no event for this long shows state `idle`."""
    otel_endpoint: str | None = None
    """OTLP/HTTP collector base URL (e.g. http://127.0.0.1:4318): the metrics consumer exports GenAI spans and metrics there."""

    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    def resolved_workspace_root(self) -> Path:
        return (
            Path(self.workspace_root)
            if self.workspace_root
            else self.resolved_data_dir() / "workspaces"
        )

    def resolved_archive_dir(self) -> Path:
        return Path(self.archive_dir) if self.archive_dir else self.resolved_data_dir() / "archive"

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Defaults < `AGENTCAST_*` variables < `overrides` (flags; None means unset)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.__struct_fields__:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = _from_env_string(cls, name, raw)
        for name, value in (overrides or {}).items():
            if value is not None:
                if name not in cls.__struct_fields__:
                    raise TypeError(f"unknown setting {name!r}")
                values[name] = value
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid setting: {exc}") from exc

    def replace(self, **changes: Any) -> Settings:
        return msgspec.structs.replace(self, **changes)


def inherited(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A variable of the process environment that is not agentcast's but matters to it
    (ANTHROPIC_API_KEY, which the agents' CLI inherits)."""
    return (os.environ if environ is None else environ).get(name)


def _from_env_string(cls: type[Settings], name: str, raw: str) -> Any:
    default = getattr(cls(), name)
    if isinstance(default, list):
        return [item.strip() for item in raw.split(",") if item.strip()]
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    return raw
