"""The format readers behind `lit_llm.data.sources.iter_documents`: one per kind of file, and the
hub data set streamer. Each yields `Document`s and counts what it read, skipped and repaired.

  text     one document per file (a code tree: unreadable, binary and oversized files skipped)
  jsonl    one document per line, text in `text_field` (.gz and .zst decompressed while reading)
  parquet  one document per row, read by record batch (bounded memory)
  warc     HTML responses (2xx), extracted to text with trafilatura
  wet      Common Crawl's extracted text (conversion records)
  hf       a Hugging Face data set streamed by name (needs the network)
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from lit_llm.data.documents import Document, ReadStats, decode_text, normalize_text, to_document
from lit_llm.errors import UserError

if TYPE_CHECKING:
    from lit_llm.data.sources import Source

BINARY_SNIFF_BYTES = 8192
TRUE = ("1", "true", "yes", "on")


def read_file(
    path: Path, root: Path, kind: str, spec: Source, stats: ReadStats, strict: bool
) -> Iterator[Document]:
    """The documents of one file of `spec`, read as `kind` (text, code, jsonl, parquet, warc, wet)."""
    if kind in ("code", "text"):
        return _read_whole_file(path, root, spec, stats, strict, code=kind == "code")
    if kind == "jsonl":
        return _read_jsonl(path, spec, stats, strict)
    if kind == "parquet":
        return _read_parquet(path, spec, stats, strict)
    return _read_warc(path, spec, stats, wet=kind == "wet")


def _read_whole_file(
    path: Path, root: Path, spec: Source, stats: ReadStats, strict: bool, code: bool
) -> Iterator[Document]:
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
    doc = to_document(decode_text(data, stats), spec.name, str(path), meta, stats)
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


def _read_jsonl(path: Path, spec: Source, stats: ReadStats, strict: bool) -> Iterator[Document]:
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
                doc = to_document(
                    normalize_text(text), spec.name, where, {"path": str(path), "line": lineno}, stats
                )
                if doc is not None:
                    yield doc
        except Exception as err:
            if isinstance(err, UserError) or not _is_corrupt_stream(err):
                raise
            raise UserError(f"{path}:{lineno + 1}: corrupt or truncated file ({err})") from err


def _is_corrupt_stream(err: Exception) -> bool:
    """A decompression or I/O failure in the middle of a (compressed) file."""
    return isinstance(err, (OSError, EOFError, zlib.error)) or type(err).__module__.startswith("zstandard")


def _read_parquet(path: Path, spec: Source, stats: ReadStats, strict: bool) -> Iterator[Document]:
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
            doc = to_document(
                normalize_text(text), spec.name, where, {"path": str(path), "row": row - 1}, stats
            )
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


def _read_warc(path: Path, spec: Source, stats: ReadStats, wet: bool) -> Iterator[Document]:
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
                doc = to_document(text, spec.name, where, meta, stats) if text is not None else None
                if doc is not None:
                    yield doc
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from err
    except ArchiveLoadFailed as err:
        raise UserError(f"{path}: not a valid WARC/WET file ({str(err).splitlines()[0]})") from err


def read_hub_dataset(spec: Source, stats: ReadStats, task_index: int, num_tasks: int) -> Iterator[Document]:
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
        doc = to_document(normalize_text(text), spec.name, where, {"dataset": name, "index": i}, stats)
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
