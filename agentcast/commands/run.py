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
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from rich.console import Console

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
    headers = {"Authorization": f"Bearer {token}"}
    body: dict[str, Any] = {"prompt": args.prompt}
    if args.session:
        body["session"] = args.session
    console = Console()
    async with httpx.AsyncClient(
        base_url=args.gateway, headers=headers, timeout=httpx.Timeout(10, read=None)
    ) as client:
        try:
            response = await client.post("/v1/runs", json=body)
        except httpx.HTTPError as exc:
            fail(f"cannot reach the gateway at {args.gateway}: {exc}")
        if response.status_code != 202:
            error = _error_of(response)
            fail(f"{error['code']}: {error['message']}")
        started = response.json()
        session, run = started["session"], started["run"]
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
    client: httpx.AsyncClient, console: Console, session: str, run: int, as_json: bool
) -> AnyEvent:
    """Follow the session's events from its start; show those of our run until it closes."""
    started = time.monotonic()
    view = None if as_json else RunView(console)
    poller = None if view is None else asyncio.create_task(_poll_progress(client, session, view))
    cursor = "start"
    try:
        with view or contextlib.nullcontext():
            while True:  # reconnect with the last cursor if the stream drops
                try:
                    async with aconnect_sse(
                        client, "GET", f"/v1/sessions/{session}/events", params={"from": cursor}
                    ) as source:
                        async for sse in source.aiter_sse():
                            if not sse.data or sse.event in ("lagged", "error"):
                                continue
                            cursor = sse.id or cursor
                            event = decode_loose(sse.data.encode())
                            if event.run < run:
                                continue
                            if view is None:
                                print(encode(event).decode(), flush=True)
                            else:
                                view.feed(event)
                            if event.type in TERMINAL_TYPES:
                                if view is not None:
                                    view.__exit__(None, None, None)
                                    console.print(view.summary(event, started))
                                return event
                except httpx.TransportError:
                    await asyncio.sleep(0.5)
    finally:
        if poller is not None:
            poller.cancel()


async def _poll_progress(client: httpx.AsyncClient, session: str, view: RunView) -> None:
    while True:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = await client.get(f"/v1/sessions/{session}")
            if response.status_code == 200:
                view.progress(response.json())
        await asyncio.sleep(_PROGRESS_POLL_S)


async def _cancel_when(
    cancel: asyncio.Event, client: httpx.AsyncClient, session: str, console: Console
) -> None:
    await cancel.wait()
    console.print("[yellow]Cancelling…[/]")
    with contextlib.suppress(httpx.HTTPError):
        await client.post(f"/v1/sessions/{session}/cancel")


def _error_of(response: httpx.Response) -> dict[str, str]:
    try:
        error = response.json()["error"]
        return {"code": str(error["code"]), "message": str(error["message"])}
    except (ValueError, KeyError, TypeError):
        return {"code": str(response.status_code), "message": response.text[:200]}
