"""Tests for lit_llm/data/sources.py, readers.py and documents.py: every reader on fixtures built here (warcio, pyarrow, gzip, zstd).

.venv/bin/python -m pytest tests/data/test_sources.py
"""

import gzip
import io
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from lit_llm.data.documents import ReadStats, decode_text
from lit_llm.data.sources import Source, detect_kind, iter_documents, resolve_files, to_source
from lit_llm.errors import UserError


def read(spec: Source, **kwargs) -> tuple[list, ReadStats]:
    stats = ReadStats()
    return list(iter_documents(spec, stats, **kwargs)), stats


def write_jsonl(path: Path, lines: list[str]) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    elif path.name.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- text and normalisation


def test_text_and_markdown_one_document_each(tmp_path):
    (tmp_path / "a.txt").write_text("alpha\r\nbeta\rgamma\n")
    (tmp_path / "b.md").write_text("# Title\n\nbody\n")
    (tmp_path / "skip.bin").write_bytes(b"xx")
    docs, stats = read(Source([str(tmp_path)]))
    assert [Path(d.id).name for d in docs] == ["a.txt", "b.md"]
    assert docs[0].text == "alpha\nbeta\ngamma\n"
    assert docs[0].source == tmp_path.name and docs[0].meta["path"] == str(tmp_path / "a.txt")
    assert (
        stats.files == 2 and stats.documents == 2 and stats.bytes == sum(len(d.text.encode()) for d in docs)
    )


def test_bad_utf8_replaced_and_counted(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe end \xe2\x82 caf\xc3\xa9")
    docs, stats = read(Source([str(tmp_path / "bad.txt")]))
    assert docs[0].text == "ok \ufffd\ufffd end \ufffd\ufffd café"
    assert stats.replaced_bytes == 4


def test_decode_text_drops_bom_and_keeps_everything_else():
    text = "\tx  y\n日本語 😀 שלום \x01\x7f"
    assert decode_text(("\ufeff" + text).encode()) == text


def test_empty_file_is_skipped_and_counted(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "full.txt").write_text("x")
    docs, stats = read(Source([str(tmp_path)]))
    assert len(docs) == 1 and stats.skipped_records == {"empty": 1}


def test_named_binary_text_file_skipped_or_strict_error(tmp_path):
    path = tmp_path / "data.txt"
    path.write_bytes(b"abc\0def")
    docs, stats = read(Source([str(path)]))
    assert docs == [] and stats.skipped_files == {"binary": 1}
    with pytest.raises(UserError, match="data.txt: binary file"):
        read(Source([str(path)]), strict=True)


def test_unreadable_named_file_is_an_error(tmp_path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_text("x")

    def deny(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(UserError, match=r"secret.txt: cannot read \(Permission denied\)"):
        read(Source([str(path)]))


# ---------------------------------------------------------------- resolving paths


def test_resolve_missing_and_empty_inputs(tmp_path):
    with pytest.raises(UserError, match="nope: no such file or directory"):
        resolve_files([str(tmp_path / "nope")])
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(UserError, match="directory has no matching files"):
        resolve_files([str(tmp_path)], extensions=[".txt"])
    with pytest.raises(UserError, match="no files match"):
        resolve_files([str(tmp_path / "*.txt")])


def test_resolve_is_sorted_deduplicated_and_recursive(tmp_path):
    for name in ["b/2.txt", "b/1.txt", "a.txt", ".git/x.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    files = resolve_files([str(tmp_path / "**/*.txt"), str(tmp_path)], extensions=[".txt"])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a.txt", "b/1.txt", "b/2.txt"]


def test_auto_kind_by_extension():
    kinds = {n: detect_kind(Path(n)) for n in ["a.TXT", "a.md", "a.jsonl.zst", "a.json", "a.parquet"]}
    assert kinds == {
        "a.TXT": "text",
        "a.md": "text",
        "a.jsonl.zst": "jsonl",
        "a.json": "jsonl",
        "a.parquet": "parquet",
    }
    assert detect_kind(Path("CC-MAIN-1.warc.wet.gz")) == "wet" and detect_kind(Path("x.warc.gz")) == "warc"
    assert detect_kind(Path("x.csv")) is None


def test_unknown_extension_named_explicitly(tmp_path):
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(UserError, match="x.csv: unknown format"):
        read(Source([str(tmp_path / "x.csv")]))
    docs, _ = read(Source([str(tmp_path / "x.csv")], kind="text"))
    assert docs[0].text == "a,b"


def test_spec_validation_and_names():
    with pytest.raises(UserError, match="unknown kind 'pdf'"):
        Source(["x"], kind="pdf")
    with pytest.raises(UserError, match="weight must be > 0"):
        Source(["x"], weight=0)
    assert Source(["data/web/*.jsonl.gz"]).name == "web"
    assert Source("corpus/wiki.jsonl.zst").name == "wiki"
    assert Source(["x"], kind="code").filter_set == "code" and Source(["x"]).filter_set == "prose"
    with pytest.raises(UserError, match=r"unknown filters 'strong' \(auto\|prose\|code\|none\)"):
        Source(["x"], filters="strong")
    with pytest.raises(UserError, match="source x: split must be one of auto, train, val"):
        Source(["x"], split="test")


def test_to_source_and_path_expansion(monkeypatch):
    import sysconfig

    monkeypatch.setenv("CORPUS", "/data/corpus")
    assert to_source("code:$CORPUS/src") == Source(["/data/corpus/src"], kind="code")
    assert to_source("jsonl:{stdlib}/x", text_field="body").paths == [sysconfig.get_paths()["stdlib"] + "/x"]
    assert to_source("c:/notakind/x.txt").paths == ["c:/notakind/x.txt"]  # not a kind: a path
    assert to_source({"paths": ["a.txt"], "weight": 2}).weight == 2
    assert to_source("hf:user/$NAME").paths == ["user/$NAME"]  # hub names are not expanded
    spec = Source(["x"])
    assert to_source(spec) is spec


# ---------------------------------------------------------------- JSON Lines


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_jsonl_plain_and_compressed(tmp_path, suffix):
    path = write_jsonl(tmp_path / f"d{suffix}", [json.dumps({"body": f"doc {i}\r\n"}) for i in range(3)])
    docs, stats = read(Source([str(path)], text_field="body"))
    assert [d.text for d in docs] == ["doc 0\n", "doc 1\n", "doc 2\n"]
    assert docs[1].id == f"{path}:2" and docs[1].meta == {"path": str(path), "line": 2}
    assert stats.files == 1 and stats.malformed_lines == 0


def test_jsonl_malformed_lines_skipped_with_file_and_line(tmp_path):
    lines = ['{"text": "a"}', "{not json", "", '{"other": 1}', '["text"]', '{"text": "b"}']
    path = write_jsonl(tmp_path / "d.jsonl", lines)
    docs, stats = read(Source([str(path)]))
    assert [d.text for d in docs] == ["a", "b"]
    assert stats.malformed_lines == 3
    assert [line.split(": ")[0] for line in stats.log] == [f"{path}:2", f"{path}:4", f"{path}:5"]
    with pytest.raises(UserError, match=r"d.jsonl:2: malformed JSON"):
        read(Source([str(path)]), strict=True)


def test_jsonl_lone_surrogate_escape_and_bad_bytes_are_repaired(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "x\\udc80y"}\n{"text": "caf\xe9"}\n')
    docs, stats = read(Source([str(path)]))
    assert [d.text for d in docs] == ["x\ufffdy", "caf\ufffd"] and stats.replaced_bytes == 2


def test_truncated_gzip_is_a_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl.gz", [json.dumps({"text": "x" * 50 + str(i)}) for i in range(200)])
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(UserError, match="d.jsonl.gz:.*corrupt or truncated"):
        read(Source([str(path)]))


# ---------------------------------------------------------------- Parquet


def test_parquet_record_batches(tmp_path):
    path = tmp_path / "d.parquet"
    texts = [f"row {i}" for i in range(2500)] + [None]
    pq.write_table(pa.table({"content": texts, "n": list(range(2501))}), path, row_group_size=1000)
    docs, stats = read(Source([str(path)], text_field="content"))
    assert len(docs) == 2500 and docs[2499].text == "row 2499" and docs[2499].id == f"{path}:2499"
    assert stats.skipped_records == {"no_text": 1}
    with pytest.raises(UserError, match="no column 'text'"):
        read(Source([str(path)]))


# ---------------------------------------------------------------- code trees


def make_tree(root: Path) -> None:
    files = {
        "pkg/a.py": "def f():\n\treturn 1\n",
        "pkg/sub/b.c": "int main(void) { return 0; }\n",
        "pkg/README.txt": "not code",
        ".git/hooks/pre-commit.py": "print('hook')\n",
        "node_modules/m/index.js": "module.exports = 1\n",
        "vendor/lib.py": "x = 1\n",
        "pkg/__pycache__/a.cpython-311.py": "x\n",
        "build/gen.py": "x = 2\n",
        ".venv/lib/site.py": "x = 3\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "pkg/blob.py").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    (root / "pkg/huge.py").write_text("x = 1\n" * 200_000)


def test_code_tree_skips_vendored_binary_and_big_files(tmp_path):
    make_tree(tmp_path)
    docs, stats = read(Source([str(tmp_path)], kind="code"))
    assert [d.meta["relpath"] for d in docs] == ["pkg/a.py", "pkg/sub/b.c"]
    assert docs[0].text == "def f():\n\treturn 1\n" and docs[0].id == str(tmp_path / "pkg/a.py")
    assert stats.skipped_files == {"binary": 1, "too_large": 1}
    assert stats.skipped_dirs == 6  # .git, .venv, build, node_modules, vendor, __pycache__
    docs, _ = read(Source([str(tmp_path)], kind="code", max_file_bytes=10_000_000, extensions=[".py"]))
    assert [d.meta["relpath"] for d in docs] == ["pkg/a.py", "pkg/huge.py"]


def test_code_tree_unreadable_file_is_skipped(tmp_path, monkeypatch):
    make_tree(tmp_path)
    real = Path.read_bytes

    def deny(self):
        if self.name == "a.py":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    docs, stats = read(Source([str(tmp_path)], kind="code"))
    assert [d.meta["relpath"] for d in docs] == ["pkg/sub/b.c"] and stats.skipped_files["unreadable"] == 1
    with pytest.raises(UserError, match="a.py: cannot read"):
        read(Source([str(tmp_path)], kind="code"), strict=True)


# ---------------------------------------------------------------- Common Crawl


def write_warc(path: Path, records: list[tuple[str, str, bytes, str]]) -> Path:
    """records: (rec_type, url, payload, content type)."""
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=path.name.endswith(".gz"))
        for rec_type, url, payload, ctype in records:
            http = None
            if rec_type == "response":
                status = "404 Not Found" if "missing" in url else "200 OK"
                http = StatusAndHeaders(status, [("Content-Type", ctype)], protocol="HTTP/1.1")
            kwargs = {"http_headers": http} if http else {"warc_content_type": ctype}
            writer.write_record(
                writer.create_warc_record(url, rec_type, payload=io.BytesIO(payload), **kwargs)
            )
    return path


ARTICLE = (
    "<html><head><title>Tides</title></head><body><nav>Home | About</nav><article><h1>Tides</h1>"
    + "".join(
        f"<p>The tide rises and falls twice a day along the coast, paragraph {i}.</p>" for i in range(8)
    )
    + "</article><footer>Copyright</footer></body></html>"
)


def test_warc_html_responses_extracted(tmp_path):
    path = write_warc(
        tmp_path / "crawl.warc.gz",
        [
            ("request", "http://a.example/", b"GET / HTTP/1.1\r\n\r\n", "application/http"),
            ("response", "http://a.example/", ARTICLE.encode(), "text/html; charset=utf-8"),
            ("response", "http://a.example/img.png", b"\x89PNG", "image/png"),
            ("response", "http://a.example/missing", ARTICLE.encode(), "text/html"),
        ],
    )
    docs, stats = read(Source([str(path)]))
    assert len(docs) == 1
    assert "The tide rises and falls twice a day" in docs[0].text and "<p>" not in docs[0].text
    assert docs[0].meta["url"] == "http://a.example/" and docs[0].meta["record_id"]
    assert stats.skipped_records == {"not_html": 1, "http_404": 1}


def test_wet_conversion_records(tmp_path):
    path = write_warc(
        tmp_path / "CC-MAIN-x.warc.wet.gz",
        [
            ("warcinfo", "", b"software: test\r\n", "application/warc-fields"),
            ("conversion", "http://b.example/", "Plain text\r\nwith ünïcode\n".encode(), "text/plain"),
            ("conversion", "http://c.example/", b"second", "text/plain"),
        ],
    )
    docs, _ = read(Source([str(path)]))
    assert [d.text for d in docs] == ["Plain text\nwith ünïcode\n", "second"]
    assert docs[1].meta["url"] == "http://c.example/"


def test_not_a_warc_file(tmp_path):
    (tmp_path / "x.warc").write_text("hello, not an archive\n")
    with pytest.raises(UserError, match="x.warc: not a valid WARC"):
        read(Source([str(tmp_path / "x.warc")]))


# ---------------------------------------------------------------- hub and scale-out


def test_hf_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        UserError, match="hf source user/corpus: streaming needs the Hugging Face Hub.*offline"
    ):
        read(Source(["user/corpus"], kind="hf"))


def test_task_split_is_a_deterministic_partition(tmp_path):
    for i in range(7):
        (tmp_path / f"{i}.txt").write_text(f"doc {i}")
    spec = Source([str(tmp_path)])
    parts = [[d.id for d in read(spec, task_index=t, num_tasks=3)[0]] for t in range(3)]
    everything = [d.id for d in read(spec)[0]]
    assert sorted(sum(parts, [])) == sorted(everything) and len(set(sum(parts, []))) == 7
    assert parts == [[d.id for d in read(spec, task_index=t, num_tasks=3)[0]] for t in range(3)]
    with pytest.raises(UserError, match="task_index"):
        read(spec, task_index=3, num_tasks=3)


def test_stats_merge():
    a, b = (
        ReadStats(files=1, skipped_files={"binary": 1}),
        ReadStats(files=2, skipped_files={"binary": 2, "x": 1}),
    )
    b.note("f:1", "bad")
    a.merge(b)
    assert a.files == 3 and a.skipped_files == {"binary": 3, "x": 1} and a.log == ["f:1: bad"]
    assert "log" not in a.as_dict() and json.dumps(a.as_dict())


def test_hf_streaming_code_path_with_a_local_iterable(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, config, split, streaming):
        calls.append((name, config, split, streaming))
        rows = [{"text": f"row {i}"} for i in range(10)] + [{"text": None}]
        return datasets.IterableDataset.from_generator(lambda: iter(rows))

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_ENABLE_HF_TRANSFER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    docs, stats = read(Source(["user/corpus"], kind="hf", hf_config="en", hf_split="validation"))
    assert calls == [("user/corpus", "en", "validation", True)]
    assert len(docs) == 10 and docs[3].text == "row 3" and stats.skipped_records == {"no_text": 1}
    import huggingface_hub

    # hf-transfer is a dependency, used by huggingface_hub < 1.0 (later versions use Xet and warn about it)
    old_hub = int(huggingface_hub.__version__.split(".")[0]) < 1
    assert os.environ.get("HF_HUB_ENABLE_HF_TRANSFER") == ("1" if old_hub else None)
    docs, _ = read(Source(["user/corpus"], kind="hf", hf_limit=4))
    assert [d.text for d in docs] == ["row 0", "row 1", "row 2", "row 3"]
    halves = [
        [d.text for d in read(Source(["user/corpus"], kind="hf"), task_index=t, num_tasks=2)[0]]
        for t in (0, 1)
    ]
    assert sorted(halves[0] + halves[1]) == sorted(f"row {i}" for i in range(10)) and halves[0] and halves[1]

    def no_network(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", no_network)
    with pytest.raises(UserError, match="hf source user/corpus: cannot open.*no network"):
        read(Source(["user/corpus"], kind="hf"))


def test_recipe_yaml_parses_into_sources():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--sources", type=list[Source])
    cfg = parser.parse_string(
        "sources:\n  - {paths: [web/*.jsonl.zst], weight: 2.0}\n  - {paths: [src], kind: code}\n"
    )
    specs = [Source(**vars(ns)) for ns in cfg.sources]
    assert [(s.name, s.kind, s.weight, s.filter_set) for s in specs] == [
        ("web", "auto", 2.0, "prose"),
        ("src", "code", 1.0, "code"),
    ]
