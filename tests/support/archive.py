"""Archive files written by the real ArchiveWriter, without NATS, for tests of the file format."""

from __future__ import annotations

from pathlib import Path

from agentcast.codec import encode, json_decoder
from agentcast.events import Event
from consumers.archive import chain
from consumers.archive.files import iter_archive, read_bytes, session_of
from consumers.archive.writer import ArchiveWriter
from tests.support.events import build_events, simple_run


def writer(root: Path, *, compress: bool = False, seal_idle_s: float = 300.0) -> ArchiveWriter:
    w = ArchiveWriter(root, seal_idle_s=seal_idle_s, compress_sealed=compress, open_files=16)
    w.scan()
    return w


def append(w: ArchiveWriter, events: list[Event], first_cursor: int = 1) -> None:
    for i, event in enumerate(events):
        envelope = json_decoder.decode(encode(event))
        w.append_event(w.get(event.session, event.ts), envelope, first_cursor + i)


async def write_session(
    root: Path, session: str, *, n_text: int = 5, seal: bool = True, compress: bool = False
) -> Path:
    """One session's sealed file (a simple run), written as the archiver writes it."""
    w = writer(root, compress=compress)
    try:
        append(w, build_events(session, simple_run(n_text)))
        sf = w.get(session, 0)
        if seal:
            w.seal(sf)
        await w.flush()
        await w.compress_sealed()
        return sf.path
    finally:
        w.close()


def archived_seqs(root: Path) -> dict[str, list[int]]:
    """Each session's seqs as the archive holds them, in file order."""
    out: dict[str, list[int]] = {}
    for path in iter_archive(root):
        session = session_of(path)
        assert session is not None
        lines = [chain.parse(chain.split(line)[0]) for line in read_bytes(path).splitlines()]
        out[session] = [int(r["seq"]) for r in lines if "seq" in r]
    return out


def all_sealed(root: Path) -> bool:
    """Every session file ends with its seal (the archiver seals ended runs once idle)."""
    last = [read_bytes(path).splitlines()[-1] for path in iter_archive(root)]
    return all(chain.record_kind(chain.parse(chain.split(line)[0])) == "seal" for line in last)
