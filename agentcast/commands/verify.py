"""`agentcast verify PATH`: the chains of an archive and, with a key, its signed checkpoints.

Exit 0: intact (open files included, unless --sealed); 1: tampering or
corruption found; 2: could not verify (no archive at PATH, a bad key, an
unreachable witness).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from agentcast.commands._common import fail


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "verify", help="check an archive: every hash chain, and with --key its signed checkpoints"
    )
    p.add_argument("path", type=Path, help="the archive directory (or one session file)")
    p.add_argument(
        "--key",
        help="the archiver's public key (ed25519:..., or a file holding it): check checkpoints",
    )
    p.add_argument(
        "--witness",
        metavar="NATS_URL",
        help="also compare the checkpoint logs with the witness's copy",
    )
    p.add_argument(
        "--sealed",
        action="store_true",
        help="fail on files not sealed (an archive that should be closed)",
    )
    p.add_argument(
        "--prove", metavar="SESSION", help="print the session's inclusion proof (JSON) and exit"
    )
    p.add_argument("--open-ok", action="store_true", help=argparse.SUPPRESS)  # the default now
    p.add_argument("--quiet", "-q", action="store_true", help="print problems only")
    p.add_argument(
        "--follow-links",
        action="store_true",
        help="also read files linked from outside the archive",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from consumers.archive import audit, signing
    from consumers.archive.checkpoint import LOG_PREFIX, LOG_SUFFIX
    from consumers.archive.files import iter_archive, leaves, session_of
    from consumers.archive.verify import verify_file

    path: Path = args.path
    if not path.exists():
        fail(f"{path}: no such file or directory")
    if not path.is_dir() and not path.is_file():
        fail(f"{path}: not a directory or a regular file")
    trusted = None
    if args.key:
        try:
            trusted = signing.public_text(signing.parse_public(args.key))
        except signing.KeyProblem as exc:
            fail(f"--key: {exc}")
    if path.is_file():
        if session_of(path) is None:
            fail(f"{path}: not an archive file (<session>.jsonl or .jsonl.zst)")
        if args.key or args.witness or args.prove:
            fail("--key, --witness and --prove check a whole archive: pass its directory")
        logs: list[Path] = []
    else:
        logs = sorted(p for p in path.glob(f"{LOG_PREFIX}*{LOG_SUFFIX}") if p.is_file())
    files = list(iter_archive(path))
    linked: list[Path] = []
    if path.is_dir() and not args.follow_links:
        linked = [p for p in [*files, *logs] if leaves(path, p)]
        files = [p for p in files if p not in linked]
        logs = [p for p in logs if p not in linked]
    for link in linked:
        print(f"{link}: not verified: links out of the archive (--follow-links reads it)")
    if not files and not logs and not linked:
        fail(f"{path}: holds no archive (no <YYYY-MM-DD>/<session>.jsonl files, no checkpoint log)")
    # Logs before files: a checkpoint names only lines already written, so on a live
    # archive every head it records is in the files read after it.
    audits = [audit.audit_log(log, trusted) for log in logs]
    reports = {session_of(p) or str(p): verify_file(p, allow_open=not args.sealed) for p in files}
    if path.is_file() and next(iter(reports.values())).not_archive:
        fail(f"{path}: not an archive file (no line of it is an archive line)")
    if args.prove:
        return _prove(audits, args.prove)
    findings: list[Any] = []
    if args.key or args.witness:
        if not logs:
            findings.append(
                audit.Finding(path, 0, "unsigned", "no checkpoint log: nothing here is signed")
            )
        for a in audits:
            findings += a.findings
        findings += audit.check_files(path, audits, reports)
    unwitnessed = 0
    if args.witness:
        witnessed = _read_witness(args.witness, [a.archive_id for a in audits if a.archive_id])
        for a in audits:
            if a.archive_id:
                got, missing = audit.compare_witness(a, witnessed[a.archive_id])
                findings += got
                unwitnessed += missing
    broken = [r for r in reports.values() if not r.ok]
    for report in broken:
        for line in report.lines():
            print(line)
    for finding in findings:
        print(finding)
    open_files = [r for r in reports.values() if r.ok and not r.sealed]
    if not args.quiet:
        for r in open_files:
            seq, count = r.covered
            cover = f"checkpoint #{seq} covers {count}" if seq else "no checkpoint covers it yet"
            print(f"{r.path}: open: {r.events} events" + (f" ({cover})" if trusted else ""))
        _verdict(reports, broken, findings, open_files, audits, trusted, unwitnessed)
    return 1 if broken or findings or linked else 0


def _verdict(
    reports: dict[str, Any],
    broken: list[Any],
    findings: list[Any],
    open_files: list[Any],
    audits: list[Any],
    trusted: str | None,
    unwitnessed: int,
) -> None:
    events = sum(r.events for r in reports.values())
    head = "OK" if not broken and not findings else f"BROKEN: {len(broken)} of {len(reports)} files"
    if findings:
        head += f", {len(findings)} checkpoint findings"
    parts = [f"{len(reports)} files ({len(open_files)} open)", f"{events} events"]
    if trusted:
        last = ", ".join(f"#{a.last}" for a in audits) or "none"
        parts.append(f"checkpoints up to {last} checked against {trusted}")
    if unwitnessed:
        parts.append(f"{unwitnessed} checkpoints not witnessed yet")
    print(f"{head}: {', '.join(parts)}")


def _prove(audits: list[Any], session: str) -> int:
    from consumers.archive import audit

    proof = audit.prove(audits, session)
    if proof is None:
        fail(f"session {session} is in no checkpoint of this archive")
    print(json.dumps(proof, indent=2))
    return 0


def _read_witness(url: str, archive_ids: list[str]) -> dict[str, list[bytes]]:
    import nats

    from consumers.archive import witness

    async def quiet(exc: Exception) -> None:
        del exc  # reported once, below, instead of nats-py's traceback per attempt

    async def read() -> dict[str, list[bytes]]:
        # nats-py's connect can retry an unreachable server forever: bounded here.
        nc = await asyncio.wait_for(
            nats.connect(
                servers=url.split(","),
                connect_timeout=2,
                max_reconnect_attempts=0,
                error_cb=quiet,
            ),
            10,
        )
        try:
            js = nc.jetstream(timeout=5)
            return {a: await witness.read_all(js, a) for a in archive_ids}
        finally:
            await nc.close()

    try:
        return asyncio.run(asyncio.wait_for(read(), 60))
    except (*witness.WitnessError, OSError) as exc:
        fail(f"could not read the witness at {url}: {type(exc).__name__}: {exc}")
