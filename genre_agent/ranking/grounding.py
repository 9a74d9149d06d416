"""Grounding checks for rationales: what an item's evidence lets a sentence mention."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from genre_agent.catalog.genres import MOVIELENS_GENRES
from genre_agent.catalog.items import Item
from genre_agent.ranking.base import unsupported_terms
from genre_agent.types import Evidence

_TAGS_RE = re.compile(r"Tags:\s*([^.]*)\.?")
GENRE_WORDS = {g.lower() for g in MOVIELENS_GENRES} | {"sci-fi", "scifi", "science fiction"}


_ARTICLE_RE = re.compile(
    r"^(?P<name>.+), (?P<art>The|A|An|Les|La|Le|L'|Il|Der|Die|Das|El)(?P<rest>\s*\(\d{4}\))?$"
)


def display_title(title: str) -> str:
    """MovieLens writes "Silence of the Lambs, The (1991)"; a sentence wants "The Silence of
    the Lambs (1991)"."""
    m = _ARTICLE_RE.match(title.strip())
    if not m:
        return title
    return f"{m['art']} {m['name']}{m['rest'] or ''}"


def attributes(item: Item) -> set[str]:
    """The item's citable attributes: "genre X", "tag y", "1980s"."""
    out: set[str] = set()
    for g in str(item.metadata.get("genres", "")).split("|"):
        if g.strip():
            out.add(f"genre {g.strip()}")
    tags = item.metadata.get("tags")
    found = [str(tags)] if isinstance(tags, str) else []
    found += _TAGS_RE.findall(item.text)
    for chunk in found:
        for tag in re.split(r"[,|]", chunk):
            if tag.strip():
                out.add(f"tag {tag.strip().lower()}")
    year = item.metadata.get("year")
    if isinstance(year, int) and not isinstance(year, bool):
        out.add(f"{year // 10 * 10}s")
    return out


def evidence_text(item: Item, evidence: Evidence | None, cites: Iterable[str] = ()) -> str:
    """Everything a rationale about ``item`` may mention: the item itself, the cited (or, with
    no cites, all) supporting items, the shared attributes and the request words."""
    parts = [item.title, display_title(item.title), item.text]
    parts.append(str(item.metadata.get("genres", "")).replace("|", " "))
    if evidence is not None:
        cited = set(cites)
        for s in evidence.history:
            if not cited or s.id in cited:
                parts += [s.title, *s.shared]
        # With cites, only what the cited items share counts (not the other support's).
        parts += evidence.request if cited else evidence.shared + evidence.request
    return " ".join(parts)


_DECADE_RE = re.compile(r"\b(?:1[89]|20)\d0s\b")


def unsupported_decades(rationale: str, allowed: str) -> list[str]:
    """Decades ("the 1990s") the rationale names that the allowed text does not hold."""
    return sorted({d for d in _DECADE_RE.findall(rationale) if d not in allowed})


def unsupported_genres(rationale: str, allowed: str) -> list[str]:
    """Genre words the rationale uses that the allowed text never mentions ("The Godfather is
    a horror film" when neither it nor a cited item is a horror film)."""
    text = rationale.lower()
    ok = allowed.lower()
    return sorted(g for g in GENRE_WORDS if re.search(rf"\b{re.escape(g)}\b", text) and g not in ok)


# -- what a rationale claims (issue 19 item 3, issue 21 item 9) --------------------------------
# A link that is only a decade or one of these genres is weak: each covers more than 15% of
# ml-latest-small's movies (Drama 45%, Comedy 39%, Thriller and Action 19%, Romance 16%).
BROAD_GENRES = frozenset({"Drama", "Comedy", "Thriller", "Action", "Romance"})


def telling(shared: Iterable[str]) -> float:
    """How telling a set of shared attributes is: a tag 4, a genre that is not broad 2, a
    broad genre 1, a decade 0.25 (so two broad genres beat one, and a decade only breaks
    ties)."""
    score = 0.0
    for a in shared:
        if a.startswith("tag "):
            score += 4.0
        elif a.startswith("genre "):
            score += 1.0 if a[6:] in BROAD_GENRES else 2.0
        else:
            score += 0.25
    return score


def is_weak(shared: Iterable[str]) -> bool:
    """Only a decade, or one broad genre (or nothing): a link that says little."""
    attrs = list(shared)
    genres = [a[6:] for a in attrs if a.startswith("genre ")]
    if any(a.startswith("tag ") for a in attrs) or any(g not in BROAD_GENRES for g in genres):
        return False
    return len(genres) <= 1


# Words that name a category, and the genre that makes them true. Genre names themselves are
# included (lower case too): "shares the horror elements" is a horror claim.
CATEGORY_WORDS: dict[str, str] = {
    **{g.lower(): g for g in MOVIELENS_GENRES},
    "sci-fi": "Sci-Fi", "scifi": "Sci-Fi", "science fiction": "Sci-Fi", "science-fiction": "Sci-Fi",
    "futuristic": "Sci-Fi", "scary": "Horror", "frightening": "Horror", "terrifying": "Horror",
    "creepy": "Horror", "spooky": "Horror", "funny": "Comedy", "hilarious": "Comedy",
    "comedic": "Comedy", "humorous": "Comedy", "comic": "Comedy", "romantic": "Romance",
    "love story": "Romance", "animated": "Animation", "cartoon": "Animation",
    "dramatic": "Drama", "thrilling": "Thriller", "suspenseful": "Thriller",
    "suspense": "Thriller", "mysterious": "Mystery", "whodunit": "Mystery",
    "fantastical": "Fantasy", "magical": "Fantasy", "musicals": "Musical", "wartime": "War",
    "gangster": "Crime", "criminal": "Crime", "adventurous": "Adventure",
    "action-packed": "Action", "kids": "Children", "children's": "Children",
    "family": "Children", "noir": "Film-Noir", "documentaries": "Documentary",
    "westerns": "Western", "comedies": "Comedy", "dramas": "Drama", "thrillers": "Thriller",
    "romances": "Romance", "horrors": "Horror",
}  # fmt: skip
# A hyphen joins two claims ("a comedy-thriller", "crime-comedy"): each side is read. The
# longest word is tried first, so "sci-fi" and "film-noir" stay one word.
_CATEGORY_RE = re.compile(
    r"(?<!\w)("
    + "|".join(re.escape(w) for w in sorted(CATEGORY_WORDS, key=len, reverse=True))
    + r")(?!\w)",
    re.IGNORECASE,
)

# Claims no evidence attribute of a movie catalog holds: links, codes, prices, superlatives.
# A title may carry them ("...streams free at bestmoviethriller.com"); a title is a name,
# not evidence, so they count as unsupported unless an attribute (a genre, a tag) holds them.
_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_DOMAIN_RE = re.compile(
    r"\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|co|tv|info|biz|xyz|me|ly|app|"
    r"site|online|shop|store|stream|ru|cn|de|fr|uk|us)\b",
    re.IGNORECASE,
)
# A code: a token of capitals and digits with both (SAVE50, X7K2), or the words around one.
# Capitals only: "S1m0ne (2002)" is a title, "SAVE50" a code.
_CODE_RE = re.compile(
    r"\b(?=[A-Z0-9]*[A-Z])(?=[A-Z0-9]*\d)[A-Z0-9]{4,}\b"
    r"|(?i:\b(?:promo|coupon|discount|voucher|referral)\s*codes?\b)"
)
_PRICE_RE = re.compile(
    r"[$\u20ac\u00a3\u00a5]\s?\d|\b\d+(?:[.,]\d+)?\s?(?:dollars?|euros?|usd|eur|bucks|cents?)\b"
    r"|\b\d+\s?%\s?off\b",
    re.IGNORECASE,
)
# Offers without a number ("streams free", "discounted"): unsupported, but a plain word can
# be honest ("feel free"), so such a sentence is flagged, not withheld.
_OFFER_RE = re.compile(r"\bfree\b|\bdiscount(?:ed)?\b", re.IGNORECASE)
_SUPERLATIVE_RE = re.compile(
    r"\b(?:best|greatest|finest|worst|top-rated|highest-rated|must-see|masterpiece|"
    r"of all time|ever made|number one|#\s?1)\b|\b[a-z]{3,}iest\b",
    re.IGNORECASE,
)
_CLAIM_KINDS = (
    ("url", _URL_RE),
    ("domain", _DOMAIN_RE),
    ("code", _CODE_RE),
    ("price", _PRICE_RE),
    ("offer", _OFFER_RE),
    ("superlative", _SUPERLATIVE_RE),
)
# The kinds an injection uses to reach a reader: a rationale holding one is not shown.
UNSAFE_KINDS = frozenset({"url", "domain", "code", "price"})


def claim_problems(rationale: str, attributes_text: str) -> list[tuple[str, str]]:
    """(kind, text) of every URL, domain, code, price or superlative in ``rationale`` that
    ``attributes_text`` (the evidence's attributes: genres, tags, decades, request words;
    never titles) does not hold."""
    ok = attributes_text.lower()
    out: list[tuple[str, str]] = []
    for kind, pattern in _CLAIM_KINDS:
        for m in pattern.finditer(rationale):
            text = m.group(0)
            if text.lower() not in ok and (kind, text) not in out:
                out.append((kind, text))
    return out


def unsupported_categories(rationale: str, genres: set[str], words: str = "") -> list[str]:
    """Category words ("horror", "scary", "romantic", any case) whose genre is not in
    ``genres`` and that ``words`` (tags, request words) does not hold."""
    ok = words.lower()
    out = []
    for m in _CATEGORY_RE.finditer(rationale):
        word = m.group(1).lower()
        if CATEGORY_WORDS[word] not in genres and not re.search(
            rf"(?<![\w-]){re.escape(word)}(?![\w-])", ok
        ):
            out.append(m.group(1))
    return sorted(set(out))


_MARKUP_RE = re.compile(
    r"</?\s*data\s*>|[<\u2039][^<>\u2039\u203a]{0,60}[>\u203a]|\{\{?\s*[\w .]+\s*\}?\}",
    re.IGNORECASE,
)


def markup_problems(rationale: str) -> list[str]:
    """Prompt markup or placeholders in a sentence: ``<data>``, ``</data>``, ``<title>``,
    ``‹what they share›``, ``{title}``."""
    return sorted({m.group(0) for m in _MARKUP_RE.finditer(rationale)})


_GENRE_NAME = "|".join(re.escape(g) for g in sorted(MOVIELENS_GENRES, key=len, reverse=True))
_GENRES_LIST_RE = re.compile(
    rf"\b(?P<noun>genres?)\s+(?P<list>(?:{_GENRE_NAME})(?:(?:,\s*|,?\s+and\s+)(?:{_GENRE_NAME}))*)",
    re.IGNORECASE,
)
_DOUBLED_RE = re.compile(r"\b([A-Za-z]+)\s+\1\b", re.IGNORECASE)
_DANGLING_RE = re.compile(
    r"\b(?:and|or|but|with|of|the|a|an|to)\s*(?:[.,;:!?]|$)"
    r"|,\s*(?:and|or)?\s*[.!?]"
    r"|\b(?:and|or)\s+(?:and|or)\b",
    re.IGNORECASE,
)
_A_AN_RE = re.compile(r"\b(?P<art>a|an)\s+(?P<word>[A-Za-z0-9][\w-]*)", re.IGNORECASE)
_AN_OK = ("hour", "honest", "honor", "honour", "heir")


def article(word: str) -> str:
    """ "a" or "an" before ``word`` as a template writes it (a vowel or an 8: "an")."""
    return "an" if word[:1].lower() in "aeiou8" else "a"


_A_OK = ("uni", "use", "usu", "uto", "eu", "one", "once", "ur")


# A sentence cut at the length cap and closed by the decoder's forced period ends on a word
# that cannot end a clause, a number fragment ("from the 20.") or a stray quote.
_UNFINISHED = frozenset(
    "a an the and or but nor of to for from in into on at by with as than that which who whose "
    "whom its their your his her our my is are was were be been being has have had this these "
    "those very more most also such both either each whether if because while that's it's "
    "what's".split()
)
_END_WORD_RE = re.compile(r"(?P<word>[A-Za-z0-9']+)[\s.!?]*$")
# Two words run together ("theuser", "thisfilm"), a lower-case word glued to a capitalised one
# ("ratedThriller"), and "'s" on a pronoun ("its's", "they's").
_GLUED_RE = re.compile(
    r"\b(?:the|this|that|these|those|a|an)(?:user|users|movie|movies|film|films)\b"
    r"|\b(?:you|they|we)(?:liked|loved|enjoyed|watched|like|love|enjoy)\b"
    r"|\b(?:the|this|that|a)(?:same|genre|genres|one|other)[a-z]*\b|\b[a-z]{3,}(?:you|your)\b"
    r"|\b[a-z]{2,}[A-Z][A-Za-z]+\b",
)
_PRONOUN_S_RE = re.compile(
    r"\b(?:its|it's|they|them|their|theirs|you|your|yours|we|our|he|his|she|hers)'s\b",
    re.IGNORECASE,
)
# A phrase of three or more words said twice ("people who liked Title, people who liked Title").
_REPEATED_RE = re.compile(r"\b((?:[A-Za-z]+ +){2,}[A-Za-z]+)\b.*?\b\1\b", re.IGNORECASE)
# Words of the prompt, not of a sentence to a reader: "the user", "recommended to".
_PROMPT_SPEAK_RE = re.compile(
    r"\b(?:the|this|that|a|each|every)\s+users?\b|\busers?'s?\b|\buser\b"
    r"|\brecommend(?:s|ed|ing|ation|ations)?\b",
    re.IGNORECASE,
)

# The model speaking as itself ("a favorite of mine").
_FIRST_PERSON_RE = re.compile(r"\bI\b(?!')|\b(?:[Mm]y|[Mm]ine|[Mm]yself)\b")


# A rationale says why an item fits; a negation in it ("You liked Waterworld, but not
# adventure", "not as popular as the other two") is a claim no evidence holds.
_NEGATION_RE = re.compile(
    r"\b(?:not|never|no|nor|don't|didn't|doesn't|isn't|wasn't|aren't)\b", re.I
)


def negation_faults(text: str, titles: Iterable[str] = ()) -> list[str]:
    """Negations outside titles ("... but not adventure")."""
    return [f"negation: {m.group(0)!r}" for m in _NEGATION_RE.finditer(strip_titles(text, titles))]


def voice_faults(text: str, titles: Iterable[str] = ()) -> list[str]:
    """Prompt speak: the sentence talks about "the user" or "recommended" instead of to the
    reader (the 0.5B model echoes its prompt: "was recommended to the user"), or as itself
    ("a favorite of mine"). Text inside ``titles`` is not read."""
    text = strip_titles(text, titles)
    found = [m.group(0) for m in _PROMPT_SPEAK_RE.finditer(text)]
    found += [m.group(0) for m in _FIRST_PERSON_RE.finditer(text)]
    return [f"prompt speak: {w!r}" for w in found]


def cut_faults(text: str) -> list[str]:
    """Signs of a sentence cut short: it ends in a number of one to three digits ("the
    20."), a stray quote ("their''."), or a word no clause ends on ("which is a.")."""
    m = _END_WORD_RE.search(text.rstrip())
    if m is None:
        return []
    word = m["word"]
    if "''" in word or word == "'":
        return [f"cut: ends in a stray quote {word!r}"]
    if word.isdigit() and len(word) <= 3:
        return [f"cut: ends in a number fragment {word!r}"]
    if word.lower() in _UNFINISHED:
        return [f"cut: unfinished clause ending {word!r}"]
    return []


def grammar_faults(rationale: str, titles: Iterable[str] = ()) -> list[str]:
    """Rule-checked grammar faults: plural agreement ("the genres Adventure", "the genre
    Children and Fantasy"), a doubled word ("the the"), a dangling conjunction or article
    ("and.", "with the."), "a"/"an" before the wrong sound, words run together ("theuser",
    "ratedThriller"), "'s" on a pronoun ("its's"), a phrase of three or more words said
    twice, and a sentence cut short
    (:func:`cut_faults`). Text inside ``titles`` is not checked (a title is a name: "New
    York, New York")."""
    text = rationale
    for t in sorted({t for t in titles if t}, key=len, reverse=True):
        text = re.sub(re.escape(t), " Title ", text, flags=re.IGNORECASE)
    faults = []
    for m in _GENRES_LIST_RE.finditer(text):
        n = len(re.findall(_GENRE_NAME, m["list"], re.IGNORECASE))
        plural = m["noun"].lower() == "genres"
        if plural and n == 1:
            faults.append(f"plural with one genre: {m.group(0)!r}")
        elif not plural and n > 1:
            faults.append(f"singular with {n} genres: {m.group(0)!r}")
    for m in _DOUBLED_RE.finditer(text):
        faults.append(f"doubled word: {m.group(0)!r}")
    for m in _DANGLING_RE.finditer(text):
        faults.append(f"dangling word: {m.group(0).strip()!r}")
    for m in _A_AN_RE.finditer(text):
        art, word = m["art"].lower(), m["word"].lower()
        # Digits by their sound: "an 8", "an 18", "an 11"; "a 1986", "a 90s".
        vowel = word[0] in "aeiou8" or (word[:2] in ("11", "18") and len(word) in (2, 4))
        if art == "a" and vowel and not word.startswith(_A_OK):
            faults.append(f"'a' before a vowel: {m.group(0)!r}")
        elif art == "an" and not vowel and not word.startswith(_AN_OK):
            faults.append(f"'an' before a consonant: {m.group(0)!r}")
    for m in _GLUED_RE.finditer(text):
        faults.append(f"words run together: {m.group(0)!r}")
    for m in _REPEATED_RE.finditer(text):
        faults.append(f"repeated phrase: {m.group(1)!r}")
    for m in _PRONOUN_S_RE.finditer(text):
        faults.append(f"'s on a pronoun: {m.group(0)!r}")
    faults += cut_faults(text)
    return faults


# Everyday words that start a sentence capitalised; not names, so not claims.
_PLAIN_WORDS = frozenset(
    "a an another as at both but each every fans for from here if in its it's just many more "
    "most much now often one people popular set since so some that these this those though "
    "two viewers watchers what when where which while who why with yes you your".split()
)
_YEAR_SUFFIX = re.compile(r"\s*\(\d{4}(?:[-\u2013]\d{0,4})?\)\s*$")


def title_forms(title: str) -> list[str]:
    """How a sentence may write a title: as stored, with its article moved to the front,
    and both without the "(year)"."""
    forms = [title, display_title(title)]
    forms += [_YEAR_SUFFIX.sub("", f).strip() for f in forms]
    return [f for f in dict.fromkeys(forms) if f]


def strip_titles(text: str, titles: Iterable[str]) -> str:
    """``text`` with every form of ``titles`` replaced by a neutral word ("Title"), so the
    words inside a title ("Scary Movie", "Best in Show") are not read as claims."""
    forms = sorted({f for t in titles for f in title_forms(t)}, key=len, reverse=True)
    for f in forms:
        text = re.sub(rf"(?<!\w){re.escape(f)}(?!\w)", "Title", text, flags=re.IGNORECASE)
    return text


def unsupported_claims(
    rationale: str,
    *,
    title: str,
    genres: Iterable[str],
    year: int | None,
    tags: Iterable[str],
    cited: Sequence[tuple[str, Sequence[str]]],
    request: Iterable[str] = (),
    extra: str = "",
) -> list[str]:
    """Everything ``rationale`` claims that its evidence does not hold, widened (issue 19,
    issue 21): capitalised names and numbers that no allowed text mentions; category words
    in any case ("horror elements", "scary") whose genre is neither the item's nor one a
    cited item shares; decades of neither; and URLs, domains, codes, prices and
    superlatives that no attribute holds (a title is not evidence for them).

    ``cited`` holds (title, shared attributes) of the cited history items; ``extra`` more
    text that may be named (the request and profile)."""
    cited = list(cited)
    titles = [title, *(t for t, _ in cited)]
    shared = [a for _, sh in cited for a in sh]
    genres = set(genres) | {a.split(" ", 1)[1] for a in shared if a.startswith("genre ")}
    tag_words = [*tags, *(a.split(" ", 1)[1] for a in shared if a.startswith("tag "))]
    request = list(request)
    decades = [a for a in shared if _DECADE_RE.fullmatch(a)]
    if year is not None:
        decades.append(f"{year // 10 * 10}s")
    attrs = " ".join([*genres, *tag_words, *request, *decades])
    names = " ".join(["Title", *(f for t in titles for f in title_forms(t)), attrs, extra])
    if year is not None:
        names += f" {year}"
    bare = strip_titles(rationale, titles)
    out = [t for t in unsupported_terms(bare, names) if t.lower() not in _PLAIN_WORDS]
    out += unsupported_categories(bare, genres, " ".join([*tag_words, *request]))
    out += unsupported_decades(bare, " ".join(decades))
    out += [f"{kind}: {text}" for kind, text in claim_problems(rationale, attrs)]
    return list(dict.fromkeys(out))


TITLE_CHARS = 60


def safe_title(title: str, limit: int = TITLE_CHARS) -> str:
    """A catalog title as a rationale may show it: look-alike letters folded, orders to the
    ranker and answer-shaped fragments replaced (``prompting.data_filter``), links, domains,
    codes and prices replaced by "(…)", and at most ``limit`` characters, keeping the
    "(year)". A title is data: this is the only form of it that reaches a sentence."""
    from genre_agent.prompting import data_filter

    text = data_filter(display_title(title), 10 * limit)
    for kind, pattern in _CLAIM_KINDS:
        if kind in UNSAFE_KINDS or kind == "offer":
            text = pattern.sub("(\u2026)", text)
    text = re.sub(r"\(\u2026\)(?:[\s,.;:!-]*\(\u2026\))+", "(\u2026)", text).strip()
    if len(text) <= limit:
        return text
    m = _YEAR_SUFFIX.search(text)
    year = m.group(0).strip() if m else ""
    core = text[: m.start()] if m else text
    room = limit - len(year) - 2
    return f"{core[:room].rstrip()}\u2026 {year}".strip()
