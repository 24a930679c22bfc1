"""What reading a source yields: `Document`s, the `ReadStats` of what was read, skipped and repaired,
and the text rules every reader applies (valid UTF-8, "\\n" newlines, no leading BOM, not blank).

    text = decode_text(raw_bytes, stats)   # undecodable bytes -> U+FFFD, one per byte, counted
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lit_llm.data.normalize import normalize_newlines

MAX_LOG_LINES = 1000
_SURROGATES = re.compile(r"[\ud800-\udfff]")


@dataclass
class Document:
    """One document read from a source."""

    text: str
    source: str
    id: str
    meta: dict = field(default_factory=dict)


@dataclass
class ReadStats:
    """What a reader read, skipped and repaired; `merge` sums two, `as_dict` is JSON for a manifest."""

    files: int = 0
    documents: int = 0
    bytes: int = 0  # UTF-8 bytes of the documents' text
    chars: int = 0
    skipped_files: dict[str, int] = field(default_factory=dict)  # reason -> count
    skipped_records: dict[str, int] = field(default_factory=dict)  # reason -> count (empty, no text...)
    skipped_dirs: int = 0
    malformed_lines: int = 0
    replaced_bytes: int = 0  # undecodable bytes replaced by U+FFFD
    log: list[str] = field(default_factory=list)  # "file:line: reason", first MAX_LOG_LINES
    log_dropped: int = 0

    def note(self, where: str, reason: str) -> None:
        if len(self.log) < MAX_LOG_LINES:
            self.log.append(f"{where}: {reason}")
        else:
            self.log_dropped += 1

    def skip_file(self, path: Path, reason: str) -> None:
        self.skipped_files[reason] = self.skipped_files.get(reason, 0) + 1
        self.note(str(path), f"skipped ({reason})")

    def skip_record(self, where: str, reason: str) -> None:
        self.skipped_records[reason] = self.skipped_records.get(reason, 0) + 1
        self.note(where, f"skipped ({reason})")

    def merge(self, other: ReadStats) -> None:
        """Add another task's or source's counts to these."""
        for name, theirs in other.__dict__.items():
            mine = getattr(self, name)
            if isinstance(theirs, dict):
                mine.update({key: mine.get(key, 0) + count for key, count in theirs.items()})
            elif isinstance(theirs, list):
                for line in theirs:
                    self.note(*line.split(": ", 1))
            else:
                setattr(self, name, mine + theirs)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "log"}


def decode_text(data: bytes, stats: ReadStats | None = None) -> str:
    """UTF-8 bytes to text: undecodable bytes become U+FFFD (one per byte, counted), newlines "\\n"."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # surrogateescape maps each bad byte to one lone surrogate, which makes them easy to count.
        text, bad = _SURROGATES.subn("\ufffd", data.decode("utf-8", errors="surrogateescape"))
        if stats is not None:
            stats.replaced_bytes += bad
    return normalize_text(text)


def normalize_text(text: str) -> str:
    """Newlines to "\\n" and no leading BOM (decoding already made the text valid)."""
    return normalize_newlines(text[1:] if text.startswith("\ufeff") else text)


def to_document(text: str, source: str, doc_id: str, meta: dict, stats: ReadStats) -> Document | None:
    """The checks every reader ends with: valid UTF-8 (lone surrogates replaced), not blank; counted."""
    try:
        nbytes = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates, e.g. from a JSON "\udc80" escape
        text, bad = _SURROGATES.subn("\ufffd", text)
        stats.replaced_bytes += bad
        nbytes = len(text.encode("utf-8"))
    if not text.strip():
        stats.skip_record(doc_id, "empty")
        return None
    stats.documents += 1
    stats.bytes += nbytes
    stats.chars += len(text)
    return Document(text=text, source=source, id=doc_id, meta=meta)
