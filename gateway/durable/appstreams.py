"""Application streams: the writable Durable Streams facade, backed by AGENTCAST_APP.

A stream `name` is its metadata message on `agentcast.appmeta.<name>` (the
content type; its stream sequence names this incarnation) and its messages on
`agentcast.app.<name>.msg`. Create is atomic (`Nats-Expected-Last-Subject-Sequence: 0`
on the metadata subject), delete purges both subjects. An append is one stored
message, so it is atomic and its offset is the stream sequence after it: in
JSON mode that message holds the append's values comma-separated (a read
joins messages with commas inside one array). Appends are stored conditionally
(`Nats-Expected-Last-Subject-Sequence`), so a writer's `Stream-Seq` is checked
against the latest one atomically; each message carries that latest value.
Reads go through the same hub, replay and framing code as sessions
(gateway/durable/read.py), on a hub of their own over the republished
`agentcast.applive.>`, so they never appear in the session firehose.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Final, Self

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import APIError

from agentcast.bus import ensure_app_stream
from agentcast.codec import encode, json_decoder, json_decoder_of
from agentcast.settings import Settings
from agentcast.subjects import (
    APP_END,
    APP_LIVE_PREFIX,
    APP_PREFIX,
    APP_STREAM,
    app_messages,
    app_meta_subject,
    app_subject,
)
from gateway.durable.offsets import format_offset
from gateway.durable.producers import ID, Producer, Refusal, is_new, state_of
from gateway.durable.source import Source
from gateway.durable.wire import Mode, mode_of
from gateway.errors import ApiError
from gateway.hub import Hub, Subjects
from gateway.replay import DirectReader, stored_seq
from gateway.telemetry import Stats

_WRONG_LAST_SEQUENCE: Final = 10071
_WRITER_SEQ: Final = "Stream-Seq"
_STORE_ATTEMPTS: Final = 20
"""Conditional appends lost to concurrent ones before the append is refused (409)."""


class StreamClosed(Refusal):
    """An append to a closed stream: 409, answered with `Stream-Closed` and its tail."""

    def __init__(self, tail: int) -> None:
        headers = {"Stream-Closed": "true", "Stream-Next-Offset": format_offset(tail)}
        super().__init__(409, "stream_closed", "the stream is closed", headers)


@dataclass(frozen=True, slots=True)
class Appended:
    """What an append did: stored, or found a duplicate (an idempotent producer's retry)."""

    duplicate: bool = False
    producer: dict[str, str] | None = None
    """The producer headers to answer with (the highest accepted seq for a duplicate)."""


class AppMeta(msgspec.Struct, frozen=True, kw_only=True):
    content_type: str


_meta_decoder: Final = json_decoder_of(AppMeta)


class AppStreams:
    """The app streams' JetStream stream, reader and hub (one per gateway process)."""

    def __init__(self, nc: Client, hub: Hub, heartbeats: asyncio.Task[None]) -> None:
        self._js = nc.jetstream()
        self.hub = hub
        self._heartbeats = heartbeats

    @classmethod
    async def open(cls, nc: Client, settings: Settings, stats: Stats) -> Self:
        await ensure_app_stream(nc.jetstream(), settings)
        reader = DirectReader(nc, APP_STREAM, prefix=APP_PREFIX)
        await reader.start()
        hub = Hub(
            nc, reader, stats, replay_batch=settings.replay_batch,
            heartbeat_s=settings.heartbeat_s, fastpath=settings.gateway_fastpath,
            subjects=Subjects(APP_LIVE_PREFIX, APP_PREFIX),
        )  # fmt: skip
        return cls(nc, hub, asyncio.create_task(hub.heartbeats()))

    def shutdown(self) -> None:
        """Tell every streaming reader to reconnect (server shutdown)."""
        self.hub.shutdown()

    async def close(self) -> None:
        self._heartbeats.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._heartbeats
        await self.hub.close()
        await self.hub.reader.stop()

    async def lookup(self, name: str) -> Source | None:
        """The stream `name` (validated by the route), None if it does not exist."""
        meta = await self.hub.reader.last(app_meta_subject(name))
        if meta is None:
            return None
        content_type = _meta_decoder.decode(meta.data).content_type
        return self._source(name, content_type, stored_seq(meta))

    def _source(self, name: str, media: str, incarnation: int) -> Source:
        tag = f"a/{name}/{incarnation}"
        return Source(self.hub, name, app_messages(name), media, tag, end_type=APP_END)

    async def create(
        self, name: str, media: str, content: bytes, writer_seq: str | None = None,
        *, close: bool = False, producer: Producer | None = None,
    ) -> tuple[bool, Source]:  # fmt: skip
        """Create `name` with its first message (closed at once with `close`); (False,
        existing) when it is there already with the same content type; 409 with another."""
        payload = message_of(mode_of(media), content, create=True)
        try:
            ack = await self._js.publish(
                app_meta_subject(name), encode(AppMeta(content_type=media)),
                stream=APP_STREAM, headers={"Nats-Expected-Last-Subject-Sequence": "0"},
            )  # fmt: skip
        except APIError as exc:
            if exc.err_code != _WRONG_LAST_SEQUENCE:
                raise
            existing = await self.lookup(name)
            if existing is None:  # deleted meanwhile
                raise ApiError(409, "conflict", f"stream {name!r} is being deleted") from exc
            if existing.media != media:
                raise ApiError(
                    409, "conflict", f"stream {name!r} exists with content type {existing.media}"
                ) from exc
            return False, existing
        source = self._source(name, media, ack.seq)
        if payload is not None or close:
            await self._store(source, payload or b"", writer_seq, close=close, producer=producer)
        return True, source

    async def append(
        self, source: Source, media: str, content: bytes, writer_seq: str | None = None,
        *, close: bool = False, producer: Producer | None = None,
    ) -> Appended:  # fmt: skip
        """Append `content` (and with `close`, close the stream: an empty body only closes)."""
        if close and not content:
            return await self._store(source, b"", writer_seq, close=True, producer=producer)
        if media != source.media:
            raise ApiError(409, "conflict", f"stream content type is {source.media}, not {media}")
        payload = message_of(source.mode, content, create=False)
        assert payload is not None  # an append always has one
        return await self._store(source, payload, writer_seq, close=close, producer=producer)

    async def _store(
        self, source: Source, payload: bytes, writer_seq: str | None, *, close: bool,
        producer: Producer | None,
    ) -> Appended:  # fmt: skip
        """Append one message after the stream's last (conditionally: see the module doc).

        Refused: a producer's fenced epoch or gap (its retry of an accepted seq is a
        duplicate, not stored again), any append to a closed stream (`StreamClosed`;
        closing it again only is a no-op), a `Stream-Seq` not greater (as text) than the
        latest one.
        """
        name = source.key
        token = producer.token if producer is not None else None
        subject = app_subject(name, closing=close, producer=token)
        for _ in range(_STORE_ATTEMPTS):
            last = await self.hub.reader.last(source.subject)
            if producer is not None:
                state = await self._producer_state(source, producer, last)
                if not is_new(producer, state):
                    assert state is not None  # a duplicate of what was accepted
                    return Appended(True, {**producer.headers(), "Producer-Seq": str(state[1])})
            if last is not None and source.closes(last):
                if close and not payload and producer is None:
                    return Appended()
                raise StreamClosed(stored_seq(last))
            held = (last.headers or {}).get(_WRITER_SEQ) if last is not None else None
            if writer_seq is not None and held is not None and writer_seq <= held:
                raise ApiError(
                    409, "sequence_conflict", f"Stream-Seq {writer_seq!r} is not after {held!r}"
                )
            after = stored_seq(last) if last is not None else 0
            headers = {
                "Nats-Expected-Last-Subject-Sequence": str(after),
                "Nats-Expected-Last-Subject-Sequence-Subject": source.subject,
            }
            if carried := writer_seq or held:
                headers[_WRITER_SEQ] = carried
            if producer is not None:
                headers.update(producer.headers())
            try:
                await self._js.publish(subject, payload, stream=APP_STREAM, headers=headers)
                return Appended(producer=producer.headers() if producer is not None else None)
            except APIError as exc:
                if exc.err_code != _WRONG_LAST_SEQUENCE:
                    raise
        raise ApiError(409, "conflict", f"stream {name!r}: too many concurrent appends, retry")

    async def _producer_state(
        self, source: Source, producer: Producer, last: Msg | None
    ) -> tuple[int, int] | None:
        """The producer's last accepted (epoch, seq): its last message is the stream's last
        (it may have closed the stream) or the last under its own subject."""
        if last is not None and (last.headers or {}).get(ID) == producer.id:
            return state_of(last.headers or {})
        mine = await self.hub.reader.last(app_subject(source.key, producer=producer.token))
        return state_of(mine.headers or {}) if mine is not None else None

    async def delete(self, name: str) -> bool:
        """Remove `name` and its messages; False if there was no such stream."""
        if await self.hub.reader.last(app_meta_subject(name)) is None:
            return False
        await self._js.purge_stream(APP_STREAM, subject=app_meta_subject(name))
        await self._js.purge_stream(APP_STREAM, subject=app_messages(name))
        return True


def message_of(mode: Mode, content: bytes, *, create: bool) -> bytes | None:
    """The message a PUT or POST body stores, None for nothing. JSON mode takes each element
    of a top-level array (or the one value) as a value, stored compact and comma-separated;
    the other modes store the body as it is. An append must store something."""
    if mode is not Mode.JSON:
        if not content and not create:
            raise ApiError(400, "empty_body", "an append needs a body")
        return content or None
    if not content.strip():
        if create:
            return None
        raise ApiError(400, "empty_body", "an append needs a body")
    try:
        value = json_decoder.decode(content)
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"body is not JSON: {exc}") from exc
    values = value if isinstance(value, list) else [value]
    if not values:
        if create:
            return None
        raise ApiError(400, "empty_body", "an append of an empty JSON array stores nothing")
    return b",".join(encode(v) for v in values)
