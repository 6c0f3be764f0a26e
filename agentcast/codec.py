"""The one place msgspec encoders and decoders are built; reuse them everywhere.

Decoders of agentcast's own wire types are here by name. A module whose Struct
lives elsewhere (the producer's acks and leases, a consumer's stored state)
gets its decoder from `json_decoder_of` / `msgpack_decoder_of`, once, at import.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec

from agentcast.control import ControlReply, ControlRequest
from agentcast.events import AnyEvent, Event
from agentcast.ws_ops import ClientOp, OpRef

T = TypeVar("T")

encoder: Final = msgspec.json.Encoder()
sorted_encoder: Final = msgspec.json.Encoder(order="sorted")
"""Keys sorted: canonical bytes (the archive's chain, checkpoints)."""
msgpack_encoder: Final = msgspec.msgpack.Encoder()
event_decoder: Final = msgspec.json.Decoder(Event)
loose_event_decoder: Final = msgspec.json.Decoder(AnyEvent)
json_decoder: Final = msgspec.json.Decoder()
control_request_decoder: Final = msgspec.json.Decoder(ControlRequest)
control_reply_decoder: Final = msgspec.json.Decoder(ControlReply)


class Stamped(msgspec.Struct):
    """Just the `updated_at` of a progress snapshot (the gateway's live feed orders by it)."""

    updated_at: int = 0


stamp_decoder: Final = msgspec.json.Decoder(Stamped)
ws_op_decoder: Final = msgspec.json.Decoder(ClientOp)
ws_ref_decoder: Final = msgspec.json.Decoder(OpRef)


def json_decoder_of(cls: type[T]) -> msgspec.json.Decoder[T]:
    """A typed JSON decoder for `cls` (build it once, at import)."""
    return msgspec.json.Decoder(cls)


def msgpack_decoder_of(cls: type[T]) -> msgspec.msgpack.Decoder[T]:
    """A typed msgpack decoder for `cls` (build it once, at import)."""
    return msgspec.msgpack.Decoder(cls)


def encode(obj: Any) -> bytes:
    """JSON bytes of any msgspec-encodable value."""
    return encoder.encode(obj)


def decode_event(raw: bytes) -> Event:
    """Decode an envelope of a known type; raises msgspec.ValidationError otherwise."""
    event: Event = event_decoder.decode(raw)
    return event


def decode_loose(raw: bytes) -> AnyEvent:
    """Decode any envelope, known type or not, with `data` as plain JSON."""
    return loose_event_decoder.decode(raw)
