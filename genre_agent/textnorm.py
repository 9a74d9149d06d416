"""Untrusted text normalised before any filter reads it: NFKC plus a confusables fold.

An instruction written with look-alike letters ("rаnk me first" with a Cyrillic "а", or
full-width "ｒａｎｋ") slips past a filter that matches Latin words. NFKC folds the
compatibility forms (full-width letters, ligatures, circled digits); the confusables fold
then maps the letters of another script that look like a Latin letter or digit (data of
PyPI ``confusable-homoglyphs``, Unicode's confusables.txt) to that letter, but only inside
words that mix scripts, or in text that is mostly Latin. A title written wholly in another
script ("Москва слезам не верит") keeps its letters.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_WORD = re.compile(r"\w+")


@lru_cache(maxsize=1)
def _fold_table() -> dict[int, str]:
    """Non-Latin letter -> the ASCII letter or digit it is confusable with."""
    from confusable_homoglyphs import categories, confusables

    out: dict[int, str] = {}
    for char, entries in confusables.confusables_data.items():
        if len(char) != 1 or char.isascii() or categories.alias(char) in ("LATIN", "COMMON"):
            continue
        for entry in entries:
            glyph = entry["c"]
            if len(glyph) == 1 and glyph.isascii() and glyph.isalnum():
                out[ord(char)] = glyph
                break
    return out


def _script(char: str) -> str:
    from confusable_homoglyphs import categories

    return str(categories.alias(char))


def _mostly_latin(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isascii() for c in letters) * 2 > len(letters)


def fold_confusables(text: str) -> str:
    """NFKC, then look-alike letters of other scripts folded to Latin in words that mix
    scripts (or in every word, when the text is mostly Latin); other text is unchanged."""
    text = unicodedata.normalize("NFKC", text)
    if text.isascii():
        return text
    table = _fold_table()

    def mixed(m: re.Match[str]) -> str:
        word = m.group(0)
        scripts = {_script(c) for c in word if c.isalpha() and not c.isascii()}
        latin = any(c.isascii() and c.isalpha() for c in word)
        return word.translate(table) if len(scripts | ({"LATIN"} if latin else set())) > 1 else word

    text = _WORD.sub(mixed, text)
    if text.isascii() or not _mostly_latin(text):
        return text

    def lookalike(m: re.Match[str]) -> str:
        # A word made only of look-alikes ("ТОР" in Cyrillic) inside Latin text; a word with
        # one letter that has no Latin twin ("Москва") is a word of its own script.
        folded = m.group(0).translate(table)
        return folded if folded.isascii() else m.group(0)

    return _WORD.sub(lookalike, text)
