"""A Durable Stream as the read path sees it: which hub, topic key and stored subject, which mode."""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.msg import Msg

from agentcast.subjects import session_events
from gateway.durable.wire import JSON_TYPE, Mode, mode_of
from gateway.frames import Frame
from gateway.hub import Hub


@dataclass(frozen=True, slots=True)
class Source:
    """One readable stream: an agent session (JSON mode, on the events hub) or an application
    stream (any content type, on the app streams' hub). Reads never tell them apart."""

    hub: Hub
    key: str
    """The hub topic: the session id, or the app stream's name."""
    subject: str
    """What replay reads: every stored message of this stream."""
    media: str
    tag: str
    """Names this stream (this incarnation of it) in ETags."""
    end_type: str | None = None
    """The message type (subject's last token) that closes the stream; None: it never closes."""

    @property
    def mode(self) -> Mode:
        return mode_of(self.media)

    def closes(self, msg: Msg) -> bool:
        """Whether stored message `msg` is the one that closed this stream."""
        subject = (msg.headers or {}).get("Nats-Subject", "")
        # `subject` is `<stored>.<key>.>`: the closing one is `<stored>.<key>.<end_type>`.
        return self.end_type is not None and subject == self.subject[:-1] + self.end_type

    def closed_by(self, frame: Frame) -> bool:
        """Whether a replayed frame (a batch's, gateway/readcache.py) closed this stream."""
        return self.end_type is not None and (frame.session, frame.type) == (
            self.key,
            self.end_type,
        )


def session_source(hub: Hub, session: str) -> Source:
    """Session `session` (validated) as a JSON-mode stream of its envelopes."""
    return Source(hub, session, session_events(session), JSON_TYPE, f"s/{session}")
