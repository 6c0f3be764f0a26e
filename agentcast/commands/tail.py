"""`agentcast tail`: follow a session (or all of them) straight from NATS."""

from __future__ import annotations

import argparse
import asyncio
import signal

from nats.js.api import ConsumerConfig, DeliverPolicy

from agentcast.bus import connect, disconnect
from agentcast.codec import decode_loose
from agentcast.commands._common import (
    add_common_args,
    fail,
    resolve_nats,
    settings_from_args,
    setup_logging,
)
from agentcast.cursor import parse_cursor
from agentcast.errors import AgentcastError
from agentcast.events import TERMINAL_TYPES
from agentcast.sessions import validate_session_id
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM, session_type_filter


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tail", help="follow a session's events live from NATS")
    add_common_args(p)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("session", nargs="?", help="session id")
    target.add_argument("--all", action="store_true", help="every session")
    p.add_argument(
        "--from", dest="start", default="start", help="start, now or a cursor (default start)"
    )
    p.add_argument("--types", default="", help="comma-separated types; `tool.*` matches a prefix")
    p.add_argument("--json", action="store_true", help="one envelope JSON per line")
    p.add_argument("--until-done", action="store_true", help="exit when a run of the session ends")
    p.set_defaults(func=_run, log_level="WARNING")


def filters(session: str | None, types: str) -> list[str]:
    """NATS subject filters for a session (or all) and a type list."""
    token = "*" if session is None else validate_session_id(session)
    patterns = [t.strip() for t in types.split(",") if t.strip()] or [">"]
    return [
        session_type_filter(token, p) if p != ">" else f"agentcast.evt.{token}.>" for p in patterns
    ]


def deliver_config(start: str) -> ConsumerConfig:
    if start == "start":
        return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    if start == "now":
        return ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
    return ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=parse_cursor(start)
    )


def _run(args: argparse.Namespace) -> int:
    setup_logging(args)
    try:
        subjects = filters(None if args.all else args.session, args.types)
        config = deliver_config(args.start)
    except AgentcastError as exc:
        fail(str(exc))
    settings = settings_from_args(args)
    url, _ = resolve_nats(settings, start=False)
    return asyncio.run(_tail(settings.replace(nats_url=url), subjects, config, args))


async def _tail(
    settings: Settings, subjects: list[str], config: ConsumerConfig, args: argparse.Namespace
) -> int:
    from rich.console import Console

    from agentcast.render import Renderer

    assert settings.nats_url
    nc = await connect(settings, "agentcast-tail")
    renderer = Renderer(Console(), json=args.json)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if len(subjects) > 1:
        config.filter_subjects = subjects
    sub = await nc.jetstream().subscribe(
        subjects[0], ordered_consumer=True, config=config, stream=EVENTS_STREAM
    )
    code = 0
    try:
        while not stop.is_set():
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                continue
            event = decode_loose(msg.data)
            renderer.feed(event)
            if args.until_done and event.type in TERMINAL_TYPES:
                code = 0 if event.type == "run.completed" else 1
                break
        else:
            code = 130
    finally:
        renderer.close()
        await disconnect(nc)
    return code
