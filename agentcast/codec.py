"""The one place msgspec encoders and decoders are built; reuse them everywhere."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from agentcast.control import ControlReply, ControlRequest
from agentcast.events import AnyEvent, Event
from agentcast.ws_ops import ClientOp, OpRef

encoder: Final = msgspec.json.Encoder()
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
