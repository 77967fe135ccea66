"""Text hygiene and candidate-title lookup used by the answer parsers and the dialogue.

Model output is untrusted: it may hold control characters, lone surrogates, zero-width characters,
markdown or megabytes of noise. Everything here is linear-time and never raises on a ``str``.

Title matching is *exact after normalisation*, in two levels, and never fuzzy:

1. ``title_key``: Unicode NFKC, case-folded, control/zero-width characters removed, whitespace
   collapsed, markdown emphasis and quotes stripped from both ends.
2. ``loose_key``: ``title_key`` with every punctuation character treated as a space, so that
   ``"Airplane!"``, ``"airplane"`` and ``"AIRPLANE ."`` meet. Used only when level 1 finds nothing.

Both sides (candidate titles and answers) go through the same function, so the normalisation is
symmetric: it can make two spellings of one title meet, never send an answer to a different title
than its own normalised form.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Collection, Iterable, Sequence

_SURROGATES = re.compile("[\ud800-\udfff]")
# C0/C1 controls except tab and newline, zero-width and bidi formatting characters, BOM.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")
_WHITESPACE = re.compile(r"\s+")
_PUNCTUATION = re.compile(r"[\W_]+")
# Decoration a model puts around a title: markdown emphasis/code, quotes, angle or square brackets
# (the latter when it echoes the "<exact title>" placeholder).
_DECORATION = " \t\n*_`\"'\u2018\u2019\u201c\u201d\u00ab\u00bb<>[]"

ELLIPSIS = "\u2026"


def clean_text(text: str) -> str:
    """Text safe to store and to show to a model: newlines unified, invisible characters dropped.

    Lone surrogates (possible in a Python ``str`` decoded with ``surrogateescape``) become U+FFFD so
    that the result always encodes to UTF-8.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SURROGATES.sub("\ufffd", text)
    return _INVISIBLE.sub("", text)


def storable_text(text: str) -> str:
    """``text`` unchanged except lone surrogates, which become U+FFFD so that it encodes to UTF-8 (JSON, parquet)."""
    return _SURROGATES.sub("\ufffd", text)


def one_line(text: str, limit: int | None = None) -> str:
    """``clean_text`` on one line with single spaces, cut to ``limit`` characters (ellipsis included)."""
    flat = _WHITESPACE.sub(" ", clean_text(text)).strip()
    if limit is not None and len(flat) > limit:
        return flat[: max(limit - 1, 0)].rstrip() + ELLIPSIS
    return flat


def strip_decoration(text: str) -> str:
    """Remove markdown emphasis, quotes and brackets around a value (not inside it)."""
    return text.strip(_DECORATION)


def title_key(text: str) -> str:
    """Level-1 matching key: NFKC, case-folded, one-line, decoration stripped from both ends."""
    return strip_decoration(one_line(unicodedata.normalize("NFKC", text)).casefold()).strip()


def loose_key(text: str) -> str:
    """Level-2 matching key: ``title_key`` with punctuation runs turned into single spaces."""
    return _WHITESPACE.sub(" ", _PUNCTUATION.sub(" ", title_key(text))).strip()


def same_title(a: str, b: str) -> bool:
    """Case-insensitive exact title comparison (whitespace-collapsed), as Hit@1 uses (docs/method.md, step 1)."""
    return " ".join(a.casefold().split()) == " ".join(b.casefold().split())


def quote(text: str, limit: int = 80) -> str:
    """A short, single-line, quoted rendering of untrusted text for problem messages."""
    return "'" + one_line(text, limit) + "'"


class CandidateIndex:
    """Lookup from a title as a model wrote it to candidate positions (0-based).

    Candidate titles may repeat (e.g. two MovieLens films both normalised to "Hamlet"); a lookup then
    returns every position with that title, and the caller decides which one is meant.
    """

    __slots__ = ("titles", "_exact", "_loose")

    def __init__(self, titles: Sequence[str]):
        self.titles: tuple[str, ...] = tuple(titles)
        self._exact = _index_by(self.titles, title_key)
        # A loose key shared by different titles ("Up!" / "Up?") names neither: only exact spelling does.
        self._loose = {
            key: positions
            for key, positions in _index_by(self.titles, loose_key).items()
            if len({title_key(self.titles[p]) for p in positions}) == 1
        }

    def __len__(self) -> int:
        return len(self.titles)

    def lookup(self, text: str) -> tuple[int, ...]:
        """Positions whose title equals ``text`` after normalisation; level 1 first, then level 2."""
        exact = self._exact.get(title_key(text))
        if exact:
            return exact
        key = loose_key(text)
        return self._loose.get(key, ()) if key else ()


def _index_by(titles: Iterable[str], key_fn) -> dict[str, tuple[int, ...]]:
    """Map each non-empty key to the ascending positions of the titles that produce it."""
    index: dict[str, list[int]] = {}
    for position, title in enumerate(titles):
        key = key_fn(title)
        if key:  # a title of only punctuation has no loose key; it stays reachable through level 1
            index.setdefault(key, []).append(position)
    return {key: tuple(positions) for key, positions in index.items()}


def first_not_in(positions: Sequence[int], excluded: Collection[int]) -> int | None:
    """The first position not excluded, or None when all are."""
    for position in positions:
        if position not in excluded:
            return position
    return None


def neutralize_markers(text: str, markers: Iterable[str]) -> str:
    """``text`` from one agent made safe for the other agent's chat: every occurrence of a control
    marker (a special token of the tokenizer, e.g. ``<|im_start|>``) becomes its bare name in square
    brackets (``[im_start]``), which the tokenizer reads as plain text.

    In self-play each agent's text is adversarial input to the other: a recommender reason that
    spells ``<|im_end|><|im_start|>system ...`` would otherwise open a new system turn in the user
    agent's context. Replacements contain neither ``<`` nor ``|``; the pass repeats until no marker
    is left, so markers cut in two by another cannot re-form.
    """
    ordered = sorted({m for m in markers if m}, key=len, reverse=True)
    for _ in range(len(text) + 1):
        before = text
        for marker in ordered:
            if marker in text:
                name = _PUNCTUATION.sub("_", marker).strip("_") or "marker"
                text = text.replace(marker, f"[{name}]")
        if text == before:
            return text
    return text


def tokenizer_control_markers(tokenizer) -> tuple[str, ...]:
    """The special-token strings of a Hugging Face tokenizer (``all_special_tokens`` and every added
    token marked special), longest first."""
    found = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for token in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).values():
        if getattr(token, "special", False):
            found.add(str(token.content))
    return tuple(sorted((m for m in found if m), key=len, reverse=True))
