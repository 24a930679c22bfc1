"""Tests for lit_llm/tokenizer.py and lit_llm/data/tokenizer_training.py: training, lossless round trip, special tokens, HF loading, errors, CLI.

.venv/bin/python -m pytest tests/test_tokenizer.py
"""

import dataclasses
import hashlib
import inspect
import json
import pickle
import random
from pathlib import Path

import pytest
import tokenizers
from transformers import AutoTokenizer

from lit_llm.cli import main
from lit_llm.data.sources import Source
from lit_llm.data.tokenizer_training import TokenizerTrainConfig, _Feed, train_command, train_tokenizer
from lit_llm.errors import UserError
from lit_llm.tokenizer import EOS, PAD, build_tokenizer, load_tokenizer

PROSE = (
    "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times.\n"
    "Numbers like 1234567 and 3.14159 appear in text; so do emails (a@b.org) and URLs.\n"
    "日本語のテキストも少し含まれています。中文也有一些。 한국어 문장도 있습니다.\n"
    "Русский текст и ελληνικά γράμματα. שלום עולם. مرحبا بالعالم.\n"
    "Emoji: 😀 👍🏽 👨‍👩‍👧 🇫🇷 — done.\n"
)
CODE = "def add(a, b):\n\t# tab-indented\n\treturn a + b\n\n\nclass Point:\n    x: int = 0\n        # eight spaces\n"
SAMPLES = [
    "",
    "hello",
    " leading and trailing spaces  ",
    "tabs\t\tand\tspaces    runs        of them",
    "line\nbreaks\r\nwindows\rold mac\n\n\n",
    "日本語 テキスト 中文 한국어",
    "😀👍🏽👨‍👩‍👧🇫🇷🧑🏿‍🚀",
    "שלום עולם مرحبا بالعالم ‏RTL‏ mark ‮override‬",
    "control \x00 \x01 \x07 \x1b[31mred\x1b[0m \x7f \x85 \u2028 \u2029",
    "combining e\u0301 vs \u00e9, Å vs A\u030a, ﬁ ligature, Ｆｕｌｌｗｉｄｔｈ",
    "zero\u200bwidth\u200djoiner\ufeffbom\ufffdreplacement",
    "math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∑∫√ and private use \ue000 \U000f0000",
    "<|endoftext|> literal, <|pad|> literal, <|endoftext|><|pad|>",
    CODE,
    PROSE,
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    (root / "prose").mkdir()
    for i in range(6):
        (root / "prose" / f"{i}.txt").write_text(PROSE * 3 + f"document {i}\n")
    (root / "code").mkdir()
    (root / "code" / "mod.py").write_text(CODE * 5)
    (root / "docs.jsonl").write_text("\n".join(json.dumps({"text": PROSE[:200] + str(i)}) for i in range(5)))
    return root


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "tok"
    inputs = [str(corpus / "prose"), f"code:{corpus / 'code'}", str(corpus / "docs.jsonl")]
    return train_tokenizer(inputs, out, vocab_size=400, special_tokens=["<|user|>"], progress=False)


def test_output_folder_and_report(trained):
    names = sorted(p.name for p in trained.path.iterdir())
    assert names == ["report.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    report = trained.report
    assert report["vocab_size"] == trained.vocab_size == 400
    assert report["bytes_per_token"] > 1 and report["train_seconds"] >= 0
    assert report["read"]["documents"] == 12 and report["special_tokens"] == {EOS: 0, PAD: 1, "<|user|>": 2}
    assert trained.sha256 == hashlib.sha256((trained.path / "tokenizer.json").read_bytes()).hexdigest()
    assert report["sha256"] == trained.sha256
    assert not list(trained.path.parent.glob(".*"))  # no temporary folder left behind


def test_round_trip_is_lossless(trained):
    for text in SAMPLES:
        assert trained.decode(trained.encode(text)) == text
    assert [trained.decode(ids) for ids in trained.encode_batch(SAMPLES)] == SAMPLES
    assert trained.encode_batch(SAMPLES) == [trained.encode(t) for t in SAMPLES]


def test_round_trip_random_unicode(trained):
    rng = random.Random(0)
    ranges = [(0, 0x7F), (0x80, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF)]
    for _ in range(200):
        text = "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(rng.randint(1, 40)))
        assert trained.decode(trained.encode(text)) == text


def test_special_tokens_are_single_ids_and_never_come_from_plain_text(trained):
    assert (trained.eos_id, trained.pad_id) == (0, 1)
    assert trained.special_tokens == {EOS: 0, PAD: 1, "<|user|>": 2}
    literal = f"a {EOS} b {PAD} c <|user|>"
    plain = trained.encode(literal)
    assert not {0, 1, 2} & set(plain) and trained.decode(plain) == literal
    assert trained.encode(EOS, allow_special=True) == [0] and trained.encode(PAD, allow_special=True) == [1]
    assert trained.encode_batch([EOS + PAD], allow_special=True) == [[0, 1]]
    for text in SAMPLES:
        assert not {0, 1, 2} & set(trained.encode(text))
    # decode keeps special ids, so documents joined by eos come back exactly
    ids = trained.encode("one") + [trained.eos_id] + trained.encode("two")
    assert trained.decode(ids) == f"one{EOS}two"


def test_transformers_auto_tokenizer_loads_it(trained):
    hf = AutoTokenizer.from_pretrained(str(trained.path))
    assert hf.is_fast and hf.eos_token == EOS and hf.pad_token == PAD
    assert (hf.eos_token_id, hf.pad_token_id) == (0, 1) and "<|user|>" in hf.all_special_tokens
    for text in SAMPLES:
        ids = hf(text)["input_ids"]
        assert hf.decode(ids) == text
        assert ids == trained.encode(text, allow_special=True)  # transformers maps literals to special ids
    batch = hf(["a b", "a longer text here"], padding=True)["input_ids"]
    assert batch[0][-1] == 1 and len(batch[0]) == len(batch[1])
    raw = tokenizers.Tokenizer.from_file(str(trained.path / "tokenizer.json"))
    assert raw.encode(PROSE).ids == trained.encode(PROSE)


def test_training_is_deterministic(corpus, tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        train_tokenizer([str(corpus)], out, vocab_size=350, progress=False)
    assert (outs[0] / "tokenizer.json").read_bytes() == (outs[1] / "tokenizer.json").read_bytes()
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()


def test_same_corpus_by_another_path_gives_the_same_tokenizer(corpus, tmp_path, monkeypatch):
    kwargs = {"vocab_size": 350, "held_out_fraction": 0.3, "progress": False}
    a = train_tokenizer([str(corpus / "prose")], tmp_path / "a", **kwargs)
    assert a.report["bytes_per_token_sample"]["held_out"]  # the held-out draw depends on document ids
    moved = tmp_path / "elsewhere" / "prose"
    moved.parent.mkdir()
    moved.symlink_to(corpus / "prose")
    monkeypatch.chdir(tmp_path)
    train_tokenizer(["elsewhere/prose"], tmp_path / "b", **kwargs)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (
        tmp_path / "b" / "tokenizer.json"
    ).read_bytes()


def test_patterns_gpt2_and_gpt4_digits():
    def pieces(pattern, text):
        return [p for p, _ in build_tokenizer(pattern).pre_tokenizer.pre_tokenize_str(text)]

    assert pieces("gpt2", "year 2024567") == ["year", "Ġ2024567"]
    assert pieces("gpt4", "year 2024567") == ["year", "Ġ", "202", "456", "7"]
    assert "".join(pieces(r"\s+", "keep  all\ttext")) == "keepĠĠallĉtext"  # a custom regex loses nothing


def test_max_chars_samples_evenly_not_the_first_documents(tmp_path):
    for i in range(40):
        (tmp_path / f"{i:02d}.txt").write_text(f"file{i:02d} " * 100)
    config = TokenizerTrainConfig(max_chars=8000, held_out_fraction=0.0, progress=False)
    feed = _Feed([Source([str(tmp_path)])], config, sample_rate=0.25)
    kept = {block.split()[0] for block in feed.blocks(None)}
    assert 0 < feed.chars_trained <= 8000 + 700  # the cap is hard, up to one block
    assert len(kept) >= 5 and max(kept) > "file20"  # spread over the corpus, not the first 8 files
    out = train_tokenizer([str(tmp_path)], tmp_path / "tok", vocab_size=300, max_chars=12_000, progress=False)
    report = out.report
    assert report["chars_trained"] <= 12_000 + 1000 and 0 < report["sample_rate"] < 1


def test_literal_special_token_in_corpus_is_reported(tmp_path, capsys):
    (tmp_path / "a.txt").write_text(f"text with {EOS} inside, twice {EOS}\n" * 3)
    tok = train_tokenizer([str(tmp_path / "a.txt")], tmp_path / "tok", vocab_size=300, progress=False)
    assert tok.report["special_token_literals_in_corpus"] == {EOS: 6}
    assert "literal <|endoftext|> 6 times" in capsys.readouterr().out
    assert 0 not in tok.encode(EOS)


def test_pickle_keeps_plain_text_encoding(trained):
    clone = pickle.loads(pickle.dumps(trained))
    assert clone.encode(EOS) == trained.encode(EOS) != [0] and clone.sha256 == trained.sha256


# ---------------------------------------------------------------- errors


def assert_no_output(out: Path) -> None:
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"vocab_size": 257}, "vocab_size 257 is too small.*at least 258"),
        ({"special_tokens": ["the"]}, "special token 'the' could collide with normal text"),
        ({"special_tokens": ["<a b>"]}, "could collide"),
        ({"special_tokens": [EOS]}, "given twice"),
        ({"pattern": "(unclosed"}, "invalid pre-tokenization pattern"),
        ({"max_chars": 0}, "max_chars must be > 0"),
    ],
)
def test_bad_options(corpus, tmp_path, kwargs, match):
    out = tmp_path / "tok"
    with pytest.raises(UserError, match=match):
        train_tokenizer([str(corpus / "prose")], out, progress=False, **{"vocab_size": 300, **kwargs})
    assert_no_output(out)


def test_bad_inputs(tmp_path):
    out = tmp_path / "tok"
    (tmp_path / "empty.txt").write_text("\n \n")
    (tmp_path / "nodata").mkdir()
    (tmp_path / "nodata" / "x.bin").write_bytes(b"1")
    cases = [
        ([str(tmp_path / "empty.txt")], "empty corpus: no text to train on in .*empty.txt"),
        ([str(tmp_path / "missing.txt")], "missing.txt: no such file or directory"),
        ([str(tmp_path / "nodata")], "nodata: directory has no matching files"),
        ([str(tmp_path / "*.jsonl")], r"\*.jsonl: no files match"),
    ]
    for inputs, match in cases:
        with pytest.raises(UserError, match=match):
            train_tokenizer(inputs, out, vocab_size=300, progress=False)
        assert_no_output(out)


def test_unreadable_file(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("some text")

    def deny(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(UserError, match=r"a.txt: cannot read \(Permission denied\)"):
        train_tokenizer([str(tmp_path / "a.txt")], tmp_path / "tok", vocab_size=300, progress=False)
    assert_no_output(tmp_path / "tok")


def test_existing_output_and_atomic_write(corpus, tmp_path, monkeypatch):
    out = tmp_path / "tok"
    out.mkdir()
    (out / "thesis.txt").write_text("mine")
    for overwrite in (False, True):  # a folder the kit never wrote is never replaced
        with pytest.raises(UserError, match="not a tokenizer folder written by lit-llm .*thesis.txt"):
            train_tokenizer([str(corpus / "prose")], out, vocab_size=300, overwrite=overwrite, progress=False)
    assert (out / "thesis.txt").read_text() == "mine"
    out = tmp_path / "kit"
    train_tokenizer([str(corpus / "prose")], out, vocab_size=300, progress=False)
    with pytest.raises(UserError, match="a tokenizer is already there .*--overwrite true"):
        train_tokenizer([str(corpus / "prose")], out, vocab_size=300, progress=False)
    before = sorted(p.name for p in out.iterdir())
    import lit_llm.tokenizer as module

    def broken_dumps(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module.json, "dumps", broken_dumps)
    with pytest.raises(OSError):
        train_tokenizer([str(corpus / "prose")], out, vocab_size=300, overwrite=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == before  # old folder intact, no half-written one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kit", "tok"]
    monkeypatch.undo()
    train_tokenizer([str(corpus / "prose")], out, vocab_size=320, overwrite=True, progress=False)
    assert (out / "tokenizer.json").exists()


def test_load_errors(tmp_path, trained):
    with pytest.raises(UserError, match="no such tokenizer folder"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(UserError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="not a valid tokenizer"):
        load_tokenizer(tmp_path)


# ---------------------------------------------------------------- command line


def test_cli_train(corpus, tmp_path, capsys):
    out = tmp_path / "tok"
    main(
        ["tokenizer", "train", "--input", str(corpus / "prose"), "--vocab_size", "300", "--output", str(out)]
    )
    assert load_tokenizer(out).vocab_size == 300 and "bytes per token" in capsys.readouterr().out
    several = f'[{corpus / "docs.jsonl"}, "code:{corpus / "code"}"]'
    args = [
        "--input",
        several,
        "--vocab_size",
        "300",
        "--output",
        str(tmp_path / "t2"),
        "--progress",
        "false",
    ]
    main(["tokenizer", "train", *args, "--special_tokens", "<|user|>", "<|sys|>"])  # a list, space-separated
    assert load_tokenizer(tmp_path / "t2").special_tokens == {EOS: 0, PAD: 1, "<|user|>": 2, "<|sys|>": 3}


def test_cli_options_are_the_config_fields_with_their_docs(capsys):
    fields = [f.name for f in dataclasses.fields(TokenizerTrainConfig)]
    params = inspect.signature(train_command).parameters
    assert list(params) == ["input", "output", *fields]
    assert {name: params[name].default for name in fields} == dataclasses.asdict(TokenizerTrainConfig())
    with pytest.raises(SystemExit):
        main(["tokenizer", "train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(f"--{name} " in help_text for name in ["input", "output", *fields])
    assert "Vocabulary size, special tokens included (at least 256 + number of special tokens)." in help_text
    assert "Show a progress bar while reading." in help_text
    with pytest.raises(SystemExit):
        main(["tokenizer", "train", "--input", "x", "--vocab_sise", "300"])
    assert "did you mean --vocab_size?" in capsys.readouterr().err


def test_cli_error_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["tokenizer", "train", "--input", str(tmp_path / "none"), "--output", str(tmp_path / "o")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lit-llm: error:") and "none: no such file or directory" in err and "\n" not in err


def test_pattern_that_lets_merges_rebuild_a_special_token_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text(f"hello {EOS} world {EOS}\n" * 200)
    with pytest.raises(UserError, match="is also learned from plain text"):
        train_tokenizer(
            [str(tmp_path / "a.txt")], tmp_path / "tok", vocab_size=400, pattern=r"\S+|\s+", progress=False
        )
    assert_no_output(tmp_path / "tok")
