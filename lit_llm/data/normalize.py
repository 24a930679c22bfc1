"""Text normalisation shared by the data pipeline: newlines, the exact-dedup key and
a fast regex word tokenizer used by the quality filters and MinHash.

    from lit_llm.data.normalize import normalize_newlines, dedup_key, split_words
    # bytes -> text (undecodable bytes replaced and counted) is lit_llm.data.sources.decode_text

    text = normalize_newlines(text)            # "\\r\\n" and "\\r" -> "\\n"
    key = dedup_key(text)                      # NFC, whitespace runs -> one space, stripped
    words = split_words(text)                  # spaCy-English-like words and punctuation tokens

`split_words` approximates the word tokenizer datatrove 0.10 uses for English (a blank spaCy
`en` pipeline): whitespace chunks, punctuation split off as separate tokens, hyphens between
letters split (``well-known`` -> ``well - known``), ``n't`` and ``'s`` clitics split, numbers
such as ``3.14`` and ``1,000`` and abbreviations such as ``U.S.``/``Mr.`` kept whole, and
pure-symbol chunks such as WikiText's ``@-@`` kept whole. It is one `re.findall`, about 50x
faster than spaCy; docs/data_filters.md measures where the two differ.
"""

from __future__ import annotations

import re
import unicodedata
from itertools import chain

# Sentence-terminal punctuation (Unicode's Sentence_Terminal characters as datatrove 0.10 lists
# them): FineWeb counts lines ending in one of these.
TERMINAL_PUNCTUATION = frozenset(
    "!.?\u0589\u061d\u061e\u061f\u06d4\u0700\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964"
    "\u0965\u104a\u104b\u1362\u1367\u1368\u166e\u1735\u1736\u17d4\u17d5\u17d6\u17d9\u17da\u1803"
    "\u1809\u1944\u1945\u1aa8\u1aa9\u1aaa\u1aab\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1c3b\u1c3c"
    "\u1c7e\u1c7f\u203c\u203d\u2047\u2048\u2049\u2e2e\u2e3c\u2e53\u2e54\u3002\ua4ff\ua60e\ua60f"
    "\ua6f3\ua6f7\ua876\ua877\ua8ce\ua8cf\ua92f\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1\uabeb"
    "\ufe52\ufe56\ufe57\uff01\uff0e\uff1f\uff61\U00010a56\U00010a57\U00010f55\U00010f56"
    "\U00010f57\U00010f58\U00010f59\U00010f86\U00010f87\U00010f88\U00010f89\U00011047\U00011048"
    "\U000110be\U000110bf\U000110c0\U000110c1\U00011141\U00011142\U00011143\U000111c5\U000111c6"
    "\U000111cd\U000111de\U000111df\U00011238\U00011239\U0001123b\U0001123c\U000112a9\U0001144b"
    "\U0001144c\U000115c2\U000115c3\U000115c9\U000115ca\U000115cb\U000115cc\U000115cd\U000115ce"
    "\U000115cf\U000115d0\U000115d1\U000115d2\U000115d3\U000115d4\U000115d5\U000115d6\U000115d7"
    "\U00011641\U00011642\U0001173c\U0001173d\U0001173e\U00011944\U00011946\U00011a42\U00011a43"
    "\U00011a9b\U00011a9c\U00011c41\U00011c42\U00011ef7\U00011ef8\U00011f43\U00011f44\U00016a6e"
    "\U00016a6f\U00016af5\U00016b37\U00016b38\U00016b44\U00016e98\U0001bc9f\U0001da88"
)

# Characters that make a token a "symbol" for Gopher's word counts (datatrove's PUNCTUATION_SET):
# ASCII punctuation, C0/C1 controls except tab and newline, common CJK/typographic marks and the
# terminal punctuation above.
_CONTROLS = "".join(map(chr, [*range(0, 9), 11, 12, *range(13, 32), *range(127, 160)]))
PUNCTUATION = frozenset(
    _CONTROLS
    + "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    + "«´»–—’“”„…∶━►、。〈〉《》「」【】！％（），．１：；？～"
).union(TERMINAL_PUNCTUATION)
_PUNCT_CLASS = "".join(sorted(re.escape(c) for c in PUNCTUATION))
SYMBOL_TOKEN_RE = re.compile(f"[{_PUNCT_CLASS}]+")
"""A token made only of PUNCTUATION characters (use `.fullmatch`)."""

# Abbreviations spaCy's English tokenizer keeps whole with their final period.
_ABBREVIATIONS = (
    "Adm|Ak|Ala|Apr|Ariz|Ark|Aug|Bros|Calif|Co|Colo|Conn|Corp|Dec|Del|Dr|Feb|Fla|Ga|Gen|Gov|Ia|Id|"
    "Ill|Inc|Ind|Jan|Jr|Jul|Jun|Kan|Kans|Ky|La|Ltd|Mar|Mass|Md|Messrs|Mich|Minn|Miss|Mo|Mont|Mr|Mrs|"
    "Ms|Mt|Neb|Nebr|Nev|Nov|Oct|Okla|Ore|Pa|Prof|Rep|Rev|Sen|Sep|Sept|St|Tenn|Va|Wash|Wis|co|vs"
)
_PRONOUNS = "(?i:i|you|we|they|he|she|it|who|what|that|there|here|how|where|why|when|let)"
_NT_VERBS = (
    "(?i:do|does|did|is|are|was|were|has|have|had|ca|could|would|should|wo|must|might|need|ai|sha|"
    "dare|ought|may)"
)
# Punctuation between two word characters that spaCy's infix rules do not split (they split a
# hyphen or comma between letters, '.' between a lower- and an upper-case letter, ':<>=/' before
# a letter, '+-*^' between digits and '...' anywhere).
_INFIX_SYMBOLS = "\u00a6\u00a9\u00ae\u00b0\u2100-\u214f\u2190-\u23ff\u2500-\u27bf"  # split everywhere
_GLUE = (
    rf"(?:(?=[^\w\s]*[^\w\s.\-])[^\w\s{_INFIX_SYMBOLS}]{{2,}}|[^\w\s\-,.:<>=/+*^…{_INFIX_SYMBOLS}]|['’]"
    r"|(?<!\d)-(?=\d)|,(?![^\W\d_])|\.(?![A-Z])|[:<>=/](?=\d)|(?<!\d)[+*^])"
)
_SPLITTABLE = r"""()\[\]{}<>"'`,;:!?#*&_%$£€¥“”‘’«»„‚…"""  # split off one char at a time

WORD_TOKEN_RE = re.compile(
    rf"""
      \w+(?=[)\]}}"!?,;:]*(?:\s|$))                     # fast path: a plain word
    | [,;!?()"\[\]]                                    # fast path: common punctuation
    | https?://[^\s<>"']*[^\s<>"'.,;:!?)\]]          # URL
    | (?:[^\W\d_]\.){{2,}}                            # U.S.  e.g.  a.m.
    | (?<![\w.'’])(?:{_ABBREVIATIONS}|[A-Za-z])\.(?![\w.])  # Mr.  Jan.  initials: J.
    | \d+(?:[.,:/]\d+)+                               # 3.14  1,000  10:30  1/2
    | (?<![\w'’])(?:{_NT_VERBS})(?=n['’]t(?!\w))      # do|ca|wo before n't
    | (?<=\w)n['’]t(?!\w)
    | (?<![\w'’])(?:{_PRONOUNS})(?=['’](?:m|re|ve|ll|d)(?!\w))  # I'm  you're  she'd
    | (?<=\w)['’](?:m|ve)(?!\w)                        # ... their clitic
    | ['’](?:re|ll|d|em)(?!\w)                         # ... also standalone, 'em
    | (?:\w+['’])*\w+?(?=['’][sS](?!\w))               # Smith's
    | ['’][sS](?!\w)                                   # 's (also WikiText's detached " 's")
    | (?<!\S)-+\w+                                     # --to (a leading dash stays on)
    | \w+(?:&\w+)+                                     # R&D
    | \w+(?:{_GLUE}\w+)+                               # f(x  a+b  sir,'tis  back,--that
    | \w+(?:['’]\w+)*(?:\.(?=[a-z\d_])\w+)*(?:(?<!\d)-(?=\d)\w+)*(?:[,;:!?]?-+(?!\S)|¡+)?  # word, o'er, B-17, low-
    | (?<!\S)[^\w\s{_SPLITTABLE}]*[@\-/\\|~^+=][^\w\s]*(?!\S)  # pure-symbol chunk: @-@  --  =>
    | \.{{2,}}|-{{2,}}|…+|''                            # ellipsis and dash runs
    | [^\w\s]                                         # any other symbol, one per token
    """,
    re.VERBOSE,
)
# Contractions written without an apostrophe that spaCy still splits ("dont" -> "do nt").
_SPLIT_FORMS_TEXT = (
    "ai|nt are|nt can|not ca|nt ca|nt|ve could|nt could|nt|ve could|ve dare|nt did|nt did|nt|ve "
    "does|nt does|nt|ve do|nt do|nt|ve gon|na got|ta had|nt had|nt|ve has|nt have|nt he|d he|d|ve "
    "he|ll|ve he|s how|d how|d|ve how|ll how|ll|ve how|re how|s how|ve i|d i|d|ve i|ll|ve i|m "
    "i|m|a is|nt it|d it|d|ve it|ll it|ll|ve i|ve may|nt may|nt|ve might|nt might|nt|ve might|ve "
    "must|nt must|nt|ve must|ve need|nt need|nt|ve not|ve ought|nt ought|nt|ve sha|nt sha|nt|ve "
    "she|d|ve she|ll|ve she|s should|nt should|nt|ve should|ve that|d that|d|ve that|ll "
    "that|ll|ve that|s there|d there|d|ve there|ll there|ll|ve there|re there|s there|ve these|d "
    "these|d|ve these|ll these|ll|ve these|re these|ve they|d they|d|ve they|ll they|ll|ve "
    "they|re they|ve this|d this|d|ve this|ll this|ll|ve this|s those|d those|d|ve those|ll "
    "those|ll|ve those|re those|ve was|nt we|d we|d|ve we|ll|ve were|nt we|ve what|d what|d|ve "
    "what|ll what|ll|ve what|re what|s what|ve when|d when|d|ve when|ll when|ll|ve when|re when|s "
    "when|ve where|d where|d|ve where|ll where|ll|ve where|re where|s where|ve who|d who|d|ve "
    "who|ll who|ll|ve who|s who|ve why|d why|d|ve why|ll why|ll|ve why|re why|s why|ve wo|nt "
    "wo|nt|ve would|nt would|nt|ve would|ve y|all you|d you|d|ve you|ll you|ll|ve you|re you|ve"
)
_SPLIT_FORMS = {
    form.replace("|", "").capitalize() if cap else form.replace("|", ""): tuple(
        (form.capitalize() if cap else form).split("|")
    )
    for form in _SPLIT_FORMS_TEXT.split()
    for cap in (False, True)
}
_CONTENT_WORD_RE = re.compile(r"\w+")
_WHITESPACE_RE = re.compile(r"\s+")


def normalize_newlines(text: str) -> str:
    """Turn Windows (CRLF) and old Mac (CR) line ends into "\\n"."""
    if "\r" not in text:
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def dedup_key(text: str) -> str:
    """The form two documents must share to be exact duplicates.

    Unicode NFC (composed and decomposed accents compare equal), every whitespace run (spaces,
    tabs, newlines, CRLF) collapsed to one space, ends stripped. Case is kept: case differences
    are real in code, and prose that differs only in case is caught by MinHash (which lowercases).
    """
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return _WHITESPACE_RE.sub(" ", text).strip()


_CHUNK_CACHE: dict[str, tuple[str, ...]] = {}
_CHUNK_CACHE_MAX = 200_000  # entries (about 40 MB on bench38); cleared when full


def _tokenize_chunk(chunk: str) -> tuple[str, ...]:
    tokens = tuple(WORD_TOKEN_RE.findall(chunk))
    if any(t in _SPLIT_FORMS for t in tokens):
        tokens = tuple(part for t in tokens for part in _SPLIT_FORMS.get(t, (t,)))
    if len(_CHUNK_CACHE) >= _CHUNK_CACHE_MAX:
        _CHUNK_CACHE.clear()
    _CHUNK_CACHE[chunk] = tokens
    return tokens


def split_words(text: str) -> list[str]:
    """Words and punctuation tokens, approximating datatrove's spaCy English word tokenizer.

    Tokens never span whitespace, so the text is split on whitespace (fast, in C) and each chunk
    is tokenized once per process (a bounded cache: word chunks repeat by Zipf's law)."""
    get = _CHUNK_CACHE.get
    return list(chain.from_iterable([get(c) or _tokenize_chunk(c) for c in text.split()]))


def content_words(text: str) -> list[str]:
    """Lowercased runs of letters, digits and underscores (punctuation dropped): MinHash's words."""
    return _CONTENT_WORD_RE.findall(text.lower())
