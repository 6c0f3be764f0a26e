"""`agentcast verify --key/--witness/--prove`: the checkpoint logs against the key, the files, the witness (pure).

A log is trusted when its checkpoints form one chain (seq 1, 2, 3... each
`prev` the hash of the one before), every signature holds under the key its
header names, keys change only where the previous checkpoint named the next
one, and the operator's key signs at least one of them: the hash chain
authenticates every checkpoint before it, the rotations every one after.
Each checkpoint's entries must hash to its signed root.

Then every head a checkpoint recorded must still be in its file, at the
same event count and seq: a rewritten file (even with its chain recomputed),
a deleted file and a tail cut below a recorded count are found and named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumers.archive import checkpoint, merkle, signing
from consumers.archive.checkpoint import Checkpoint, Entry
from consumers.archive.verify import FileReport


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    kind: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class LogAudit:
    """One checkpoint log, checked."""

    path: Path
    checkpoints: list[Checkpoint] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    claims: dict[str, list[tuple[Entry, int]]] = field(default_factory=dict)
    """Each session's distinct recorded heads, with the first checkpoint recording each."""

    @property
    def archive_id(self) -> str:
        return str(self.checkpoints[-1].header["archive"]) if self.checkpoints else ""

    @property
    def last(self) -> int:
        return self.checkpoints[-1].seq if self.checkpoints else 0


def audit_log(path: Path, trusted: str | None) -> LogAudit:
    """Check one log; `trusted` is the operator's public key (`ed25519:...`), None: no key given."""
    audit = LogAudit(path)
    add = audit.findings.append
    try:
        # A last line without its newline is being written, or a crash cut it (the archiver
        # drops it at its next start): never fsynced nor witnessed, so not a checkpoint yet.
        lines, _ = checkpoint.split_log(path.read_bytes())
    except OSError as exc:
        add(Finding(path, 0, "unreadable", str(exc)))
        return audit
    for no, raw in enumerate(lines, 1):
        try:
            audit.checkpoints.append(checkpoint.parse_line(no, raw))
        except checkpoint.MalformedCheckpoint as exc:
            add(Finding(path, no, "edited", str(exc)))
    state: dict[str, Entry] = {}
    prev: Checkpoint | None = None
    trusted_seen = False
    root = ""
    for cp in audit.checkpoints:
        _check_link(cp, prev, add, path)
        key = str(cp.header["key"])
        if not signing.valid(key, cp.signed_bytes, cp.sig):
            add(
                Finding(
                    path, cp.line, "forged", f"checkpoint #{cp.seq}: the signature is not {key}'s"
                )
            )
        if prev is not None:
            expected = prev.header.get("next_key") or prev.header["key"]
            if key != expected:
                add(
                    Finding(
                        path,
                        cp.line,
                        "key",
                        f"checkpoint #{cp.seq} is signed by {key}, but #{prev.seq} names {expected}"
                        " (a key changes only by a rotation the old key signs)",
                    )
                )
        trusted_seen = trusted_seen or key == trusted
        checkpoint.apply(state, cp)
        if cp.full or cp.entries or prev is None:
            root = checkpoint.tree_root(state.values())
        rooted = root == cp.header["root"] and len(state) == cp.header["size"]
        if not rooted:
            add(
                Finding(
                    path,
                    cp.line,
                    "edited",
                    f"checkpoint #{cp.seq}: its entries do not hash to its signed root "
                    "(an entry was edited, added or removed, or a checkpoint before it dropped)",
                )
            )
        for e in cp.entries if rooted else ():  # an edited checkpoint's entries prove nothing
            seen = audit.claims.setdefault(e.session, [])
            if not seen or seen[-1][0].head != e.head:
                seen.append((e, cp.seq))
        prev = cp
    if trusted is not None and audit.checkpoints and not trusted_seen:
        add(
            Finding(
                path,
                0,
                "key",
                f"no checkpoint is signed by {trusted} (the wrong key, or the log was replaced)",
            )
        )
    return audit


def _check_link(cp: Checkpoint, prev: Checkpoint | None, add: Any, path: Path) -> None:
    want = prev.seq + 1 if prev else 1
    if cp.seq > want:
        missing = f"#{want}" if cp.seq == want + 1 else f"#{want}..#{cp.seq - 1}"
        add(Finding(path, cp.line, "dropped", f"checkpoint {missing} missing before #{cp.seq}"))
    elif cp.seq < want:
        add(Finding(path, cp.line, "reordered", f"checkpoint #{cp.seq} after #{want - 1}"))
    elif cp.header["prev"] != (prev.digest if prev else ""):
        add(
            Finding(
                path,
                cp.line,
                "edited",
                f"checkpoint #{cp.seq} does not chain to #{want - 1} (one of them was changed)",
            )
        )


def check_files(root: Path, audits: list[LogAudit], files: dict[str, FileReport]) -> list[Finding]:
    """Every recorded head against the session files; sets `covered` on each report found."""
    found: list[Finding] = []
    for audit in audits:
        for session, claims in audit.claims.items():
            report = files.get(session)
            if report is None:
                e, seq = claims[-1]
                found.append(
                    Finding(
                        root / e.date / f"{session}.jsonl",
                        0,
                        "deleted",
                        f"session {session} is missing: checkpoint #{seq} of {audit.path.name} "
                        f"recorded {e.count} events up to seq {e.last_seq}",
                    )
                )
                continue
            good = 0
            for i, (e, seq) in enumerate(claims):
                where = report.heads.get(e.head)
                if where is not None and where[1:] == (e.count, e.last_seq):
                    good = max(good, where[0])
                    # Recorded until the session's next head: the newest checkpoint naming this one.
                    until = claims[i + 1][1] - 1 if i + 1 < len(claims) else audit.last
                    report.covered = max(report.covered, (until, e.count))
                    continue
                found.append(_mismatch(report, e, seq, good))
                break
    return found


def _mismatch(report: FileReport, e: Entry, seq: int, good: int) -> Finding:
    if report.events < e.count:
        return Finding(
            report.path,
            report.event_lines[-1] if report.event_lines else 0,
            "cut",
            f"the file has {report.events} events; checkpoint #{seq} recorded {e.count} "
            f"(up to seq {e.last_seq})",
        )
    line = report.event_lines[e.count - 1] if e.count else 1
    return Finding(
        report.path,
        line,
        "rewritten",
        f"checkpoint #{seq} recorded event {e.count} (seq {e.last_seq}) with head "
        f"{e.head[:16]}..., the file differs: rewritten after line {good} and at or before "
        f"line {line}",
    )


def compare_witness(audit: LogAudit, witnessed: list[bytes]) -> tuple[list[Finding], int]:
    """The log against the witness's copy: (findings, checkpoints the witness does not hold yet)."""
    found: list[Finding] = []
    path = audit.path
    theirs: dict[int, bytes] = {}
    for payload in witnessed:
        header, sig = checkpoint.parse_witness(payload)
        theirs[int(header["seq"])] = checkpoint.witness_payload(header, sig)
    ours = {cp.seq: cp for cp in audit.checkpoints}
    beyond = sorted(s for s in theirs if s > audit.last)
    if beyond:
        found.append(
            Finding(
                path,
                0,
                "rolled back",
                f"the log ends at checkpoint #{audit.last}; the witness holds up to #{beyond[-1]}",
            )
        )
    for seq in sorted(theirs):
        cp = ours.get(seq)
        if seq > audit.last:
            break
        if cp is None:
            found.append(
                Finding(path, 0, "dropped", f"checkpoint #{seq} is witnessed, not in the log")
            )
        elif cp.witness_payload() != theirs[seq]:
            found.append(
                Finding(
                    path, cp.line, "edited", f"checkpoint #{seq} differs from the witness's copy"
                )
            )
    return found, sum(1 for s in ours if s not in theirs)


def prove(audits: list[LogAudit], session: str) -> dict[str, Any] | None:
    """The inclusion proof of a session in the newest checkpoint recording it, or None."""
    best: tuple[LogAudit, Checkpoint] | None = None
    for audit in audits:
        if session in audit.claims and audit.checkpoints:
            best = (audit, audit.checkpoints[-1])
    if best is None:
        return None
    audit, last = best
    state: dict[str, Entry] = {}
    for cp in audit.checkpoints:
        checkpoint.apply(state, cp)
    if session not in state:
        return None
    ordered = sorted(state)
    leaves = [state[s].leaf() for s in ordered]
    index = ordered.index(session)
    entry = state[session]
    return {
        "session": session,
        "file": f"{entry.date}/{session}.jsonl",
        "entry": {
            "session": entry.session,
            "date": entry.date,
            "count": entry.count,
            "last_seq": entry.last_seq,
            "head": entry.head,
        },
        "leaf_index": index,
        "tree_size": len(leaves),
        "path": [h.hex() for h in merkle.path(leaves, index)],
        "checkpoint": last.header,
        "sig": last.sig,
    }
