"""`agentcast run PROMPT`: start a run through the gateway and watch it live.

Exit codes: 0 completed, 1 failed, 130 cancelled (Ctrl+C asks the server to
cancel the run, then waits for it to say so), 2 for bad usage or an error
from the gateway (printed with its code).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time

import msgspec
from rich.console import Console

from agentcast.client import Client, ClientError, GatewayUnreachable
from agentcast.codec import decode_loose, encode
from agentcast.commands._common import add_client_args, fail, gateway_token, setup_logging
from agentcast.events import TERMINAL_TYPES, AnyEvent
from agentcast.live_view import RunView

_EXIT = {"run.completed": 0, "run.failed": 1, "run.cancelled": 130}
_PROGRESS_POLL_S = 0.5


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="start a run and follow it live in the terminal")
    p.add_argument("prompt", help="what the agent should do")
    p.add_argument(
        "--session", help="session id (a new one by default; an existing one continues it)"
    )
    p.add_argument(
        "--json", action="store_true", help="print one event per line instead of the live view"
    )
    add_client_args(p)
    p.set_defaults(func=_run, log_level="WARNING")


def _run(args: argparse.Namespace) -> int:
    setup_logging(args)
    token = gateway_token(args, scopes=["read", "run"])
    return asyncio.run(_follow_run(args, token))


async def _follow_run(args: argparse.Namespace, token: str) -> int:
    console = Console()
    async with Client(args.gateway, token) as client:
        try:
            queued = await client.run(args.prompt, session=args.session or None)
        except GatewayUnreachable as exc:
            fail(f"cannot reach the gateway at {args.gateway}: {exc.message}")
        except ClientError as exc:
            fail(f"{exc.code}: {exc.message}")
        session, run = queued.session, queued.run
        if not args.json:
            console.print(f"[dim]session {session} · run {run}[/]")
        cancel = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, cancel.set)
        loop.add_signal_handler(signal.SIGTERM, cancel.set)
        watch = asyncio.create_task(_watch(client, console, session, run, args.json))
        cancelling = asyncio.create_task(_cancel_when(cancel, client, session, console))
        try:
            closing = await watch
        finally:
            cancelling.cancel()
        return _EXIT.get(closing.type, 1)


async def _watch(
    client: Client, console: Console, session: str, run: int, as_json: bool
) -> AnyEvent:
    """Follow the session's events from its start; show those of our run until it closes."""
    started = time.monotonic()
    view = None if as_json else RunView(console)
    poller = None if view is None else asyncio.create_task(_poll_progress(client, session, view))
    try:
        with view or contextlib.nullcontext():
            # The client resumes from its last cursor by itself when the stream drops.
            async for typed in client.events(session, from_="start"):
                if typed.run < run:
                    continue
                raw = encode(typed)
                event = decode_loose(raw)  # the live view reads any type, as plain data
                if view is None:
                    print(raw.decode(), flush=True)
                else:
                    view.feed(event)
                if event.type in TERMINAL_TYPES:
                    if view is not None:
                        view.__exit__(None, None, None)
                        console.print(view.summary(event, started))
                    return event
    finally:
        if poller is not None:
            poller.cancel()
    raise AssertionError("a session's event stream never ends")


async def _poll_progress(client: Client, session: str, view: RunView) -> None:
    while True:
        with contextlib.suppress(ClientError):
            view.progress(msgspec.to_builtins(await client.snapshot(session)))
        await asyncio.sleep(_PROGRESS_POLL_S)


async def _cancel_when(
    cancel: asyncio.Event, client: Client, session: str, console: Console
) -> None:
    await cancel.wait()
    console.print("[yellow]Cancelling…[/]")
    with contextlib.suppress(ClientError):
        await client.cancel(session)
