"""Source readers: turn files, code trees, Common Crawl archives and hub data sets into `Document`s.

One reader per format, shared by the tokenizer trainer and the data pipeline:

    from lit_llm.data.sources import SourceSpec, ReadStats, iter_documents
    stats = ReadStats()
    for doc in iter_documents(SourceSpec(paths=["corpus/*.jsonl.zst"]), stats):
        ...

Formats (`SourceSpec.kind`; "auto" decides per file by extension):
  text     .txt .md .markdown .rst: one document per file
  jsonl    .jsonl .jsonl.gz .jsonl.zst .json: one document per line, text in `text_field`
  parquet  .parquet: one document per row, read by record batch (bounded memory)
  code     a tree walked by extension; vendored, generated, hidden and build folders skipped
  warc     .warc(.gz): HTML responses, extracted to text with trafilatura
  wet      .wet(.gz): Common Crawl's extracted text (conversion records)
  hf       a Hugging Face data set streamed by name (needs the network)

Text is always valid UTF-8 with "\\n" newlines: undecodable bytes become U+FFFD (one per byte,
counted in `ReadStats.replaced_bytes`), "\\r\\n" and "\\r" become "\\n", a leading BOM is dropped.

Bad input: a missing path or a directory/glob with no matching file is a `UserError`, and so is
an unreadable file, except inside a code tree, where unreadable, binary (a NUL byte in the first
8 KB) and oversized files are skipped and counted like any other unwanted file. Malformed JSON
lines and records without text are skipped, counted and logged as "file:line: reason"
(`strict=True` turns them into a `UserError`).
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lit_llm.errors import UserError

KINDS = ("auto", "text", "jsonl", "parquet", "code", "warc", "wet", "hf")
FILTER_SETS = ("auto", "prose", "code", "none")
# Extensions per kind, checked in this order against the lower-cased file name (".wet.gz" before ".gz").
KIND_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "wet": (".wet", ".wet.gz"),
    "warc": (".warc", ".warc.gz"),
    "jsonl": (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json"),
    "parquet": (".parquet",),
    "text": (".txt", ".md", ".markdown", ".rst"),
}
CODE_EXTENSIONS = (
    ".py",
    ".pyi",
    ".c",
    ".h",
    ".cc",
    ".cpp",
    ".cxx",
    ".hpp",
    ".hh",
    ".cu",
    ".cuh",
    ".java",
    ".kt",
    ".scala",
    ".go",
    ".rs",
    ".js",
    ".jsx",
    ".mjs",
    ".ts",
    ".tsx",
    ".rb",
    ".php",
    ".cs",
    ".swift",
    ".m",
    ".mm",
    ".sh",
    ".bash",
    ".lua",
    ".pl",
    ".pm",
    ".r",
    ".jl",
    ".hs",
    ".ml",
    ".ex",
    ".exs",
    ".erl",
    ".clj",
    ".dart",
    ".sql",
    ".zig",
    ".nim",
    ".f90",
    ".vue",
    ".svelte",
)
VCS_DIRS = frozenset({".git", ".hg", ".svn"})
# Folder names never walked inside a code tree (besides every hidden folder and *.egg-info).
CODE_SKIP_DIRS = frozenset(
    {
        "node_modules",
        "bower_components",
        "vendor",
        "vendored",
        "third_party",
        "thirdparty",
        "build",
        "dist",
        "__pycache__",
        "venv",
        "env",
        "site-packages",
        "dist-packages",
        "generated",
        "_generated",
        "__generated__",
        "target",
    }
)
BINARY_SNIFF_BYTES = 8192
MAX_LOG_LINES = 1000
TRUE = ("1", "true", "yes", "on")
_GLOB_CHARS = re.compile(r"[*?\[]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")


@dataclass
class Document:
    """One document read from a source."""

    text: str
    source: str
    id: str
    meta: dict = field(default_factory=dict)


@dataclass
class SourceSpec:
    """One entry of a data recipe's `sources:` list.

    Args:
        paths: Files, directories or globs (`**` recurses); for kind "hf", the data set's hub name.
        name: Source name used in ids, the manifest and mixture weights; defaults from the first path.
        kind: auto|text|jsonl|parquet|code|warc|wet|hf. "auto" decides per file by extension.
        weight: Mixture weight of this source when the training data module samples sources.
        text_field: JSON key / Parquet column / hub data set column holding the text.
        extensions: File extensions kept when walking a directory or expanding a glob; default per kind
            (common source extensions for code, all known data formats for auto).
        max_file_bytes: Code files larger than this are skipped and counted (text files are always read).
        hf_split: Split of the hub data set.
        hf_config: Configuration (subset) name of the hub data set.
        hf_limit: Read at most this many records from the hub data set (per task).
        filters: Quality filter set the pipeline applies: prose|code|none|auto (code for kind code,
            prose otherwise).
    """

    paths: list[str]
    name: str | None = None
    kind: str = "auto"
    weight: float = 1.0
    text_field: str = "text"
    extensions: list[str] | None = None
    max_file_bytes: int = 1_000_000
    hf_split: str = "train"
    hf_config: str | None = None
    hf_limit: int | None = None
    filters: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.paths, (str, os.PathLike)):
            self.paths = [self.paths]
        self.paths = [str(p) for p in self.paths]
        if not self.paths:
            raise UserError("source has no paths")
        checks = [
            (self.kind in KINDS, f"unknown kind {self.kind!r} (one of {', '.join(KINDS)})"),
            (self.filters in FILTER_SETS, f"unknown filters {self.filters!r} ({'|'.join(FILTER_SETS)})"),
            (self.weight > 0, f"weight must be > 0, got {self.weight}"),
            (self.max_file_bytes > 0, "max_file_bytes must be > 0"),
            (self.kind != "hf" or len(self.paths) == 1, "kind hf takes exactly one data set name"),
        ]
        for ok, problem in checks:
            if not ok:
                raise UserError(f"source {self.paths[0]}: {problem}")
        if self.name is None:
            self.name = _default_name(self.paths[0])

    @property
    def filter_set(self) -> str:
        """The quality filter set to apply, with "auto" resolved."""
        if self.filters != "auto":
            return self.filters
        return "code" if self.kind == "code" else "prose"


def _default_name(path: str) -> str:
    head = _GLOB_CHARS.split(path, maxsplit=1)[0] if _GLOB_CHARS.search(path) else path
    name = Path(head.rstrip("/\\")).name or Path(path).parent.name or "source"
    for ext in sorted((e for exts in KIND_EXTENSIONS.values() for e in exts), key=len, reverse=True):
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return name


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


# ---------------------------------------------------------------- files


def _skip_dir(name: str, code_tree: bool) -> bool:
    if name in VCS_DIRS:
        return True
    return code_tree and (name.startswith(".") or name in CODE_SKIP_DIRS or name.endswith(".egg-info"))


def _has_ext(path: Path, extensions: Iterable[str] | None) -> bool:
    return extensions is None or any(path.name.lower().endswith(ext.lower()) for ext in extensions)


def _walk(root: Path, extensions, code_tree: bool, stats: ReadStats | None) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        kept = sorted(d for d in dirnames if not _skip_dir(d, code_tree))
        if stats is not None:
            stats.skipped_dirs += len(dirnames) - len(kept)
        dirnames[:] = kept
        found += [Path(dirpath, f) for f in sorted(filenames) if _has_ext(Path(f), extensions)]
    return found


def _resolve_with_roots(paths, extensions, code_tree=False, stats=None) -> list[tuple[Path, Path]]:
    """Resolve paths to (file, root) pairs; root is what relative paths in code metadata start from."""
    out: list[tuple[Path, Path]] = []
    for raw in paths:
        raw = str(raw)
        if _GLOB_CHARS.search(raw):
            matches = sorted(glob.glob(raw, recursive=True))
            root = Path(_GLOB_CHARS.split(raw, maxsplit=1)[0] or ".")
            root = root if root.is_dir() else root.parent
            files = []
            for m in map(Path, matches):
                if m.is_dir():
                    files += _walk(m, extensions, code_tree, stats)
                elif _has_ext(m, extensions):
                    files.append(m)
            if not files:
                raise UserError(f"{raw}: no files match{_ext_hint(extensions)}")
            out += [(f, root) for f in files]
        elif os.path.isdir(raw):
            files = _walk(Path(raw), extensions, code_tree, stats)
            if not files:
                raise UserError(f"{raw}: directory has no matching files{_ext_hint(extensions)}")
            out += [(f, Path(raw)) for f in files]
        elif os.path.exists(raw):
            out.append((Path(raw), Path(raw).parent))
        else:
            raise UserError(f"{raw}: no such file or directory")
    seen: set[Path] = set()
    return [(f, r) for f, r in out if not (f in seen or seen.add(f))]


def _ext_hint(extensions) -> str:
    shown = sorted(extensions or ())[:10] + (["..."] if len(extensions or ()) > 10 else [])
    return f" (extensions: {', '.join(shown)})" if extensions is not None else ""


def resolve_files(paths, extensions=None, *, code_tree: bool = False) -> list[Path]:
    """Expand files, directories and globs into a deterministic list of files.

    Each input is expanded in sorted order and inputs keep their given order; duplicates are dropped.
    Directories are walked recursively (VCS folders skipped; with `code_tree`, also hidden, vendored,
    build and generated folders). `extensions` filters walked and globbed files, never a file named
    explicitly. A missing path, or a directory/glob with no matching file, is a `UserError`.
    """
    return [f for f, _ in _resolve_with_roots(paths, extensions, code_tree)]


def detect_kind(path: Path) -> str | None:
    """The reader kind for a file name, or None when the extension is not a known data format."""
    name = path.name.lower()
    for kind, exts in KIND_EXTENSIONS.items():
        if any(name.endswith(ext) for ext in exts):
            return kind
    return None


# ---------------------------------------------------------------- text normalisation


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
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _emit(text: str, spec: SourceSpec, doc_id: str, meta: dict, stats: ReadStats) -> Document | None:
    """Final checks shared by all readers: valid UTF-8 (no lone surrogates), not blank; update stats."""
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
    return Document(text=text, source=spec.name, id=doc_id, meta=meta)


# ---------------------------------------------------------------- readers


def _read_file(path: Path, root: Path, spec: SourceSpec, stats: ReadStats, strict: bool, code: bool):
    """One document per file. Code trees skip unreadable, binary and oversized files; text files
    are read whatever their size, and an unreadable one is an error (the user named it)."""
    try:
        if code and path.stat().st_size > spec.max_file_bytes:
            stats.skip_file(path, "too_large")
            return
        data = path.read_bytes()
    except OSError as err:
        if strict or not code:
            raise UserError(f"{path}: cannot read ({err.strerror or err})") from err
        stats.skip_file(path, "unreadable")
        return
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        if strict and not code:
            raise UserError(f"{path}: binary file (NUL byte in the first 8 KB), not text")
        stats.skip_file(path, "binary")
        return
    stats.files += 1
    meta = {"path": str(path)}
    if code:
        meta["relpath"] = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    doc = _emit(decode_text(data, stats), spec, str(path), meta, stats)
    if doc is not None:
        yield doc


def _open_lines(path: Path) -> io.BufferedIOBase:
    name = path.name.lower()
    try:
        if name.endswith(".gz"):
            return gzip.open(path, "rb")
        if name.endswith(".zst"):
            import zstandard

            raw = open(path, "rb")  # noqa: SIM115 (closed with the reader, by the caller)
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)
            return io.BufferedReader(reader)
        return open(path, "rb")
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from err


def _bad_line(where: str, reason: str, stats: ReadStats, strict: bool) -> None:
    if strict:
        raise UserError(f"{where}: {reason}")
    stats.malformed_lines += 1
    stats.note(where, reason)


def _read_jsonl(path: Path, spec: SourceSpec, stats: ReadStats, strict: bool) -> Iterator[Document]:
    stats.files += 1
    with _open_lines(path) as f:
        lineno = 0
        try:
            for lineno, line in enumerate(f, start=1):  # noqa: B007 (lineno used after the loop)
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    record = json.loads(decode_text(line, stats))
                except json.JSONDecodeError as err:
                    _bad_line(where, f"malformed JSON ({err.msg})", stats, strict)
                    continue
                text = record.get(spec.text_field) if isinstance(record, dict) else None
                if not isinstance(text, str):
                    _bad_line(where, f"no string field {spec.text_field!r}", stats, strict)
                    continue
                doc = _emit(normalize_text(text), spec, where, {"path": str(path), "line": lineno}, stats)
                if doc is not None:
                    yield doc
        except Exception as err:
            if isinstance(err, UserError) or not _is_corrupt_stream(err):
                raise
            raise UserError(f"{path}:{lineno + 1}: corrupt or truncated file ({err})") from err


def _is_corrupt_stream(err: Exception) -> bool:
    """A decompression or I/O failure in the middle of a (compressed) file."""
    return isinstance(err, (OSError, EOFError, zlib.error)) or type(err).__module__.startswith("zstandard")


def _read_parquet(path: Path, spec: SourceSpec, stats: ReadStats, strict: bool) -> Iterator[Document]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except OSError as err:
        raise UserError(f"{path}: not a readable Parquet file ({err})") from err
    columns = pf.schema_arrow.names
    if spec.text_field not in columns:
        raise UserError(f"{path}: no column {spec.text_field!r} (columns: {', '.join(columns[:10])})")
    stats.files += 1
    row = 0
    for batch in pf.iter_batches(batch_size=1024, columns=[spec.text_field]):
        for text in batch.column(0).to_pylist():
            where = f"{path}:{row}"
            row += 1
            if not isinstance(text, str):
                if strict:
                    raise UserError(f"{where}: {spec.text_field!r} is not a string")
                stats.skip_record(where, "no_text")
                continue
            doc = _emit(normalize_text(text), spec, where, {"path": str(path), "row": row - 1}, stats)
            if doc is not None:
                yield doc


def _decode_html(data: bytes, content_type: str, stats: ReadStats) -> str:
    """Decode an HTTP body by the charset of its Content-Type (UTF-8 when absent or unknown)."""
    match = re.search(r"charset=[\"']?([\w.:-]+)", content_type, re.IGNORECASE)
    charset = match.group(1).lower().replace("_", "-") if match else "utf-8"
    if charset not in ("utf-8", "utf8", "us-ascii", "ascii"):
        try:
            return normalize_text(data.decode(charset, errors="replace"))
        except LookupError:
            pass
    return decode_text(data, stats)


def _warc_html_text(record, where: str, url: str, stats: ReadStats) -> str | None:
    """The main text of a 2xx HTML response record (trafilatura), or None (skip counted)."""
    import trafilatura

    ctype = record.http_headers.get_header("Content-Type") or ""
    status = record.http_headers.get_statuscode() or ""
    if not ctype.lower().startswith(("text/html", "application/xhtml")):
        stats.skip_record(where, "not_html")
        return None
    if not status.startswith("2"):
        stats.skip_record(where, f"http_{status or 'unknown'}")
        return None
    html = _decode_html(record.content_stream().read(), ctype, stats)
    text = trafilatura.extract(html, url=url, include_comments=False, deduplicate=False)
    if not text:
        stats.skip_record(where, "no_text_extracted")
        return None
    return normalize_text(text)


def _read_warc(path: Path, spec: SourceSpec, stats: ReadStats, wet: bool) -> Iterator[Document]:
    """WARC: HTML responses (2xx) extracted with trafilatura. WET: the text of conversion records."""
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    stats.files += 1
    try:
        with open(path, "rb") as f:
            for n, record in enumerate(ArchiveIterator(f)):
                where = f"{path}:{n}"
                url, rec_id = (
                    record.rec_headers.get_header(h) for h in ("WARC-Target-URI", "WARC-Record-ID")
                )
                if wet and record.rec_type == "conversion":
                    text = decode_text(record.content_stream().read(), stats)
                elif not wet and record.rec_type == "response" and record.http_headers is not None:
                    text = _warc_html_text(record, where, url, stats)
                else:
                    continue
                meta = {"path": str(path), "url": url, "record_id": rec_id}
                doc = _emit(text, spec, where, meta, stats) if text is not None else None
                if doc is not None:
                    yield doc
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from err
    except ArchiveLoadFailed as err:
        raise UserError(f"{path}: not a valid WARC/WET file ({str(err).splitlines()[0]})") from err


def _read_hf(spec: SourceSpec, stats: ReadStats, task_index: int, num_tasks: int) -> Iterator[Document]:
    """Stream a hub data set with `datasets` (hf_transfer on when installed); offline is a UserError."""
    name = spec.paths[0]
    offline = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if os.environ.get(v, "").lower() in TRUE]
    if offline:
        raise UserError(
            f"hf source {name}: streaming needs the Hugging Face Hub but {offline[0]}=1 (offline); "
            "unset it, or download the data set and use it as jsonl/parquet files"
        )
    _enable_hf_transfer()
    from datasets import load_dataset
    from datasets.distributed import split_dataset_by_node

    try:
        ds = load_dataset(name, spec.hf_config, split=spec.hf_split, streaming=True)
    except Exception as err:  # the hub reports a bad name, config or a network error many ways
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        hint = " (no network? set HF_HUB_OFFLINE=1 and use local files)" if _is_network_error(err) else ""
        raise UserError(f"hf source {name}: cannot open split {spec.hf_split!r}: {first}{hint}") from err
    if num_tasks > 1:
        ds = split_dataset_by_node(ds, rank=task_index, world_size=num_tasks)
    if spec.hf_limit is not None:
        ds = ds.take(spec.hf_limit)
    for i, record in enumerate(ds):
        where = f"{name}/{spec.hf_split}:{task_index}/{num_tasks}:{i}"
        text = record.get(spec.text_field)
        if not isinstance(text, str):
            stats.skip_record(where, "no_text")
            continue
        doc = _emit(normalize_text(text), spec, where, {"dataset": name, "index": i}, stats)
        if doc is not None:
            yield doc


def _enable_hf_transfer() -> None:
    """Turn on hf_transfer when installed and used: huggingface_hub >= 1.0 downloads through Xet and
    only warns about HF_HUB_ENABLE_HF_TRANSFER, so it is set for older versions only."""
    import importlib.util

    import huggingface_hub

    if int(huggingface_hub.__version__.split(".")[0]) >= 1 or importlib.util.find_spec("hf_transfer") is None:
        return
    os.environ.setdefault("HF_HUB_ENABLE_HF_TRANSFER", "1")
    huggingface_hub.constants.HF_HUB_ENABLE_HF_TRANSFER = os.environ["HF_HUB_ENABLE_HF_TRANSFER"] in TRUE


def _is_network_error(err: BaseException) -> bool:
    while err is not None:
        if isinstance(err, (ConnectionError, TimeoutError)) or "connect" in type(err).__name__.lower():
            return True
        err = err.__cause__ or err.__context__
    return False


# ---------------------------------------------------------------- entry point


def source_files(spec: SourceSpec, task_index: int = 0, num_tasks: int = 1, stats=None) -> list:
    """The (file, root) pairs of a file source that task `task_index` of `num_tasks` reads: files[i::n]."""
    if not 0 <= task_index < num_tasks:
        raise UserError(f"task_index must be in [0, {num_tasks}), got {task_index}")
    if spec.extensions is not None:
        extensions = spec.extensions
    elif spec.kind in ("code", "auto"):
        extensions = CODE_EXTENSIONS if spec.kind == "code" else sum(KIND_EXTENSIONS.values(), ())
    else:
        extensions = KIND_EXTENSIONS[spec.kind]
    pairs = _resolve_with_roots(spec.paths, extensions, code_tree=spec.kind == "code", stats=stats)
    return pairs[task_index::num_tasks]


def iter_documents(
    spec: SourceSpec,
    stats: ReadStats | None = None,
    strict: bool = False,
    task_index: int = 0,
    num_tasks: int = 1,
) -> Iterator[Document]:
    """Yield the documents of one source, in a deterministic order.

    Args:
        spec: The source.
        stats: Filled in while reading (counts, skips, repairs, a log of "file:line: reason").
        strict: Raise a `UserError` on a malformed line or record instead of skipping it.
        task_index: This task's index when the input is split over `num_tasks` tasks.
        num_tasks: Number of tasks; file sources are split by file (files[task_index::num_tasks]),
            hub data sets by shard (`datasets.distributed.split_dataset_by_node`).
    """
    stats = stats if stats is not None else ReadStats()
    if not 0 <= task_index < num_tasks:
        raise UserError(f"task_index must be in [0, {num_tasks}), got {task_index}")
    if spec.kind == "hf":
        yield from _read_hf(spec, stats, task_index, num_tasks)
        return
    for path, root in source_files(spec, task_index, num_tasks, stats):
        kind = spec.kind if spec.kind != "auto" else detect_kind(path)
        if kind is None:
            known = ", ".join(k for k in KINDS if k not in ("auto", "hf"))
            raise UserError(f"{path}: unknown format (extension); set the source's kind ({known})")
        if kind in ("code", "text"):
            yield from _read_file(path, root, spec, stats, strict, code=kind == "code")
        elif kind == "jsonl":
            yield from _read_jsonl(path, spec, stats, strict)
        elif kind == "parquet":
            yield from _read_parquet(path, spec, stats, strict)
        else:
            yield from _read_warc(path, spec, stats, wet=kind == "wet")
