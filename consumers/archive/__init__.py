"""The tamper-evident audit archive: hash-chained JSONL files per session."""

from consumers.archive.service import Archiver

__all__ = ["Archiver"]
