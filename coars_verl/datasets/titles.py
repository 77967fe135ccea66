"""Item title normalisation and disambiguation.

The agents name items by title, so every item of a prepared dataset gets a title that is unique
case-insensitively (the dialogue matches titles case-insensitively).
"""

from __future__ import annotations

import html
import re
from typing import Iterable

import numpy as np
import pandas as pd


_WS = re.compile(r"\s+")
_TAG = re.compile(r"<[^>]{0,200}>")
_CTRL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")

MISSING_TITLES = frozenset({"", "unknown", "unkonwn", "none", "null", "nan", "n/a"})
"""Placeholder titles (case-insensitive) treated as a missing title: ml-100k item 267 is 'unknown'
in u.item and 'unkonwn' in RecBole's copy."""


def clean_title(title: object) -> str:
    """Trim, unescape HTML entities, drop tags and control characters, collapse whitespace.

    Returns "" for a missing title (None, NaN, a non-string, or a placeholder in MISSING_TITLES).
    """
    if title is None or not isinstance(title, str):
        return ""
    t = html.unescape(title)
    if "<" in t:
        t = _TAG.sub(" ", t)
    t = _WS.sub(" ", _CTRL.sub(" ", t)).strip()
    if t.casefold() in MISSING_TITLES:
        return ""
    return t


# Articles that MovieLens moves to the end of a title ("Matrix, The"); "L'" attaches without a space.
_ARTICLES = (
    "The",
    "A",
    "An",
    "La",
    "Le",
    "Les",
    "L'",
    "Il",
    "Lo",
    "Gli",
    "El",
    "Los",
    "Las",
    "Der",
    "Die",
    "Das",
    "Det",
    "Den",
    "De",
    "Het",
    "Un",
    "Une",
    "Una",
    "Uno",
    "O",
    "Os",
    "As",
)
_YEAR = re.compile(r"\s*\((\d{4})(?:[-\u2013]\d{0,4})?\)\s*$")
_ARTICLE_SUFFIX = re.compile(r"^(?P<body>.+?), (?P<art>" + "|".join(re.escape(a) for a in _ARTICLES) + r")$")
_ALT = re.compile(r"^(?P<main>.*?)(?P<alt>\s*\([^()]*\))$")


def _move_article(part: str) -> str:
    m = _ARTICLE_SUFFIX.match(part.strip())
    if not m:
        return part.strip()
    art, body = m.group("art"), m.group("body")
    return f"{art}{body}" if art.endswith("'") else f"{art} {body}"


def normalize_movielens_title(raw: object) -> tuple[str, str]:
    """MovieLens title -> (title, year).

    "Matrix, The (1999)" -> ("The Matrix", "1999"); the trailing year is removed and a trailing
    article is moved to the front, also inside a trailing alternative title in parentheses:
    "City of Lost Children, The (Cité des enfants perdus, La) (1995)" ->
    ("The City of Lost Children (La Cité des enfants perdus)", "1995"). The year is kept aside to
    tell apart different films that share a title (see disambiguate_titles).
    """
    t = clean_title(raw)
    if not t:
        return "", ""
    year = ""
    m = _YEAR.search(t)
    if m:
        year = m.group(1)
        t = t[: m.start()].rstrip()
    alt = ""
    m2 = _ALT.match(t)
    if m2 and m2.group("main").strip():
        t, alt = m2.group("main"), m2.group("alt").strip()
        inner = _move_article(alt[1:-1])
        alt = f"({inner})"
    t = _move_article(t)
    if alt:
        t = f"{t} {alt}"
    t = clean_title(t)
    return t, year


def disambiguate_titles(
    item_ids: Iterable[str], titles: Iterable[str], hints: Iterable[str] | None = None
) -> tuple[list[str], int]:
    """Make titles unique case-insensitively; returns (new titles, number of items renamed).

    ``item_ids`` must be in the canonical item order (it decides who keeps the plain title).
    For each group of items sharing a title (compared case-insensitively):
    1. if the members have a hint (MovieLens: the release year) and the hints are not all the same,
       every member with a hint becomes "Title (hint)": "Psycho (1960)" and "Psycho (1998)";
    2. names still shared after that keep the first item (canonical order) as is and number the
       others: "Chasing Amy (2)", "Chasing Amy (3)", ... (skipping names already taken).
    Titles that are already unique are never changed.
    """
    ids = list(item_ids)
    out = [str(t) for t in titles]
    hint_list = [""] * len(out) if hints is None else ["" if h is None else str(h) for h in hints]
    if not (len(ids) == len(out) == len(hint_list)):
        raise ValueError("item_ids, titles and hints must have the same length")
    keys = pd.Series([t.casefold() for t in out])
    dup = keys.duplicated(keep=False).to_numpy()
    if not dup.any():
        return out, 0
    original = list(out)
    taken = set(keys.tolist())
    groups: dict[str, list[int]] = {}
    for i in np.flatnonzero(dup):
        groups.setdefault(keys.iat[i], []).append(int(i))
    for key in sorted(groups, key=lambda k: groups[k][0]):
        members = groups[key]
        hs = {hint_list[i] for i in members if hint_list[i]}
        if len(hs) > 1:
            for i in members:
                if hint_list[i]:
                    cand = f"{out[i]} ({hint_list[i]})"
                    if cand.casefold() not in taken:
                        out[i] = cand
        # number what is still shared within the group
        sub: dict[str, list[int]] = {}
        for i in members:
            sub.setdefault(out[i].casefold(), []).append(i)
        for name_key in sorted(sub, key=lambda k: sub[k][0]):
            same = sub[name_key]
            taken.add(name_key)
            k = 2
            for i in same[1:]:
                while f"{out[i]} ({k})".casefold() in taken:
                    k += 1
                out[i] = f"{out[i]} ({k})"
                taken.add(out[i].casefold())
                k += 1
    renamed = sum(1 for a, b in zip(original, out) if a != b)
    return out, renamed
