"""The gateway's pure parts: framing, parameter parsing, glob coverage, tokens."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from websockets.frames import Frame as WsFrame
from websockets.streams import StreamReader

from agentcast._internals import http_chunk as chunk
from agentcast._internals import ws_frame as ws_text
from agentcast.settings import Settings
from agentcast.tokens import (
    TokenError,
    load_secret,
    mint_token,
    parse_scopes,
    parse_ttl,
    verify_token,
)
from gateway.errors import ApiError
from gateway.frames import Frame, sse_event, sse_retry
from gateway.params import (
    NOW,
    START,
    glob_covers,
    parse_from,
    parse_glob,
    parse_types,
    replay_filter,
)

SECRET = "unit-test-secret-0123456789abcdef0123"


def test_an_event_frame_is_built_once_and_shared() -> None:
    frame = Frame(42, "s_1", "text.delta", b'{"seq":1}')
    assert frame.sse == b"%x\r\n" % len(b'id: 42\nevent: text.delta\ndata: {"seq":1}\n\n') + (
        b'id: 42\nevent: text.delta\ndata: {"seq":1}\n\n\r\n'
    )
    assert frame.sse is frame.sse and frame.ws is frame.ws


def test_sse_data_with_line_breaks_becomes_several_data_lines() -> None:
    assert (
        sse_event("1", "x\ny", b'{"a":\n1}\r\n')
        == b'id: 1\nevent: x y\ndata: {"a":\ndata: 1}\ndata: \n\n'
    )
    assert sse_retry(1500, "bye\nnow") == b": bye now\nretry: 1500\n\n"
    assert chunk(b"") == b"0\r\n\r\n"


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_ws_text_frames_parse_with_the_websockets_library(size: int) -> None:
    payload = b"x" * size
    reader = StreamReader()
    reader.feed_data(ws_text(payload))
    parser = WsFrame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    assert frame.fin and frame.opcode.name == "TEXT" and frame.data == payload


def test_ws_event_frame_is_the_spec_shape() -> None:
    import json

    frame = Frame(7, "s_1", "status", b'{"type":"status"}')
    assert json.loads(frame.ws[2:]) == {"op": "event", "cursor": "7", "event": {"type": "status"}}


def test_from_and_last_event_id() -> None:
    assert parse_from(None) == START and parse_from("start") == START and parse_from("now") == NOW
    assert parse_from("17") == 17 and parse_from("now", last_event_id="23") == 23
    for bad in ("", "x", "0", "-3", "1e3"):
        with pytest.raises(ValueError):
            parse_from(bad)


def test_type_filters_match_exact_types_and_prefixes_at_any_depth() -> None:
    f = parse_types(["text.delta,tool.*"])
    assert f is not None
    assert f("text.delta") and f("tool.input.delta") and f("tool.called")
    assert not f("text.completed") and not f("toolbox")
    assert parse_types(None) is None and parse_types([""]) is None
    for bad in (["nope"], ["tool.**"], ["x.*"], ["a b"]):
        with pytest.raises(ApiError):
            parse_types(bad)


def test_replay_filters_push_one_type_down_to_nats() -> None:
    assert replay_filter("s_1", None) == "agentcast.evt.s_1.>"
    assert replay_filter("s_1", parse_types(["tool.*"])) == "agentcast.evt.s_1.tool.>"
    assert replay_filter(None, parse_types(["status"])) == "agentcast.evt.*.status"
    assert replay_filter("s_1", parse_types(["status,tool.*"])) == "agentcast.evt.s_1.>"


def test_glob_coverage_is_conservative() -> None:
    assert glob_covers("*", "anything*") and glob_covers("team_*", "team_*")
    assert glob_covers("team_*", "team_a*") and glob_covers("team_*", "team_7")
    assert not glob_covers("team_*", "*") and not glob_covers("team_*", "other")
    assert not glob_covers("team_*", "te*") and not glob_covers("team_?", "team_a*")
    assert parse_glob(None, default="t_*") == "t_*"
    with pytest.raises(ApiError):
        parse_glob("a.>", default="*")


def test_tokens_round_trip_and_refuse_tampering_and_expiry() -> None:
    claims = verify_token(SECRET, mint_token(SECRET, scopes=["read", "run"], sessions="team_*"))
    assert claims.has_scope("read") and claims.has_scope("run") and not claims.has_scope("admin")
    assert claims.allows_session("team_1") and not claims.allows_session("other")
    assert verify_token(SECRET, mint_token(SECRET, scopes=["admin"])).has_scope("run")
    with pytest.raises(TokenError, match="expired"):
        verify_token(SECRET, mint_token(SECRET, scopes=["read"], ttl_s=-5))
    with pytest.raises(TokenError):
        verify_token(SECRET + "x", mint_token(SECRET, scopes=["read"]))
    with pytest.raises(ValueError):
        mint_token(SECRET, scopes=["root"])


def test_ttl_and_scope_flags() -> None:
    assert [parse_ttl(v) for v in ("90", "30s", "15m", "1h", "7d")] == [90, 30, 900, 3600, 604800]
    assert parse_scopes("read,run") == ["read", "run"]
    for bad in ("0", "1w", "h"):
        with pytest.raises(ValueError):
            parse_ttl(bad)
    with pytest.raises(ValueError):
        parse_scopes("read,root")


def test_the_secret_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings.load({"data_dir": str(tmp_path)}, environ={})
    secret = load_secret(settings)
    path = tmp_path / "jwt_secret"
    assert len(secret) >= 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_secret(settings) == secret
    assert load_secret(settings.replace(jwt_secret="from-settings")) == "from-settings"


def test_agentcast_token_prints_only_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from agentcast.commands import token as token_command

    parser = argparse.ArgumentParser()
    token_command.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "token",
            "--scope",
            "read,run",
            "--sessions",
            "team_*",
            "--ttl",
            "2h",
            "--data",
            str(tmp_path),
        ]
    )
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    claims = verify_token(
        load_secret(Settings.load({"data_dir": str(tmp_path)}, environ={})), printed.strip()
    )
    assert (
        printed.count("\n") == 1 and claims.sessions == "team_*" and claims.exp - claims.iat == 7200
    )
