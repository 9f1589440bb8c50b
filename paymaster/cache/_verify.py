"""The false-hit guard: a few readable rules that veto a semantic neighbour.

Embeddings put "How do I learn deep learning in 1 month?" and "... in 2 months?"
at cosine 0.94, and "Where can I buy used books?" next to "Where can I sell
used books?". Each rule below looks for one kind of difference that changes
the answer while barely moving the embedding. The rules were chosen and their
two parameters set on half of the QQP dev pairs, then checked on the other half
(bench/cache_quality.py, bench/README-cache.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from paymaster.cache._types import Verdict

# Function words: differing in these rarely changes what is asked.
_STOP = frozenset(
    """a an the of to in on at for from by with about into onto over under as and or but if then
    than so because while after before during since until upon via per
    is are was were be been being am do does did doing done have has had having can could should
    would will shall may might must i me my mine myself we us our ours you your yours yourself he
    him his she her it its they them their this that these those there here what which who whom
    whose when where why how whats hows some any all most more much many very really just also
    even still only too own same such other another each every get gets got getting go goes going
    make makes making made let lets""".split()  # noqa: SIM905 - a word list reads better as text
)
# Words that frame a question rather than say what it is about ("the best way
# to", "what are some good tips for"); two phrasings of one question often
# differ only in these.
_GENERIC = frozenset(
    """best good great top better nice easy easiest fastest quickest simple simplest effective
    efficient possible actual actually exact exactly real true truly basically generally usually
    ever mean means meaning think thought feel like likes want wants need needs know knew find
    found tip tips idea ideas method methods option options step steps example examples kind kinds
    type types someone somebody anyone anybody people person everyone one ones thing things stuff
    way ways use using used help start starting ask question questions answer opinion""".split()  # noqa: SIM905
)
_NEGATIONS = frozenset(
    """not no never without none nothing nobody neither nor cannot cant dont doesnt didnt isnt
    arent wasnt werent wont wouldnt shouldnt couldnt hasnt havent hadnt aint mustnt neednt mightnt shant""".split()  # noqa: SIM905
)
# Question words whose change changes the question ("why X" versus "where X").
# how/what/which are left out: "How do I ...?" and "What is the way to ...?" ask alike.
_WH_WORDS = frozenset({"why", "where", "who", "whom", "whose", "when"})
# Opposites: one word swapped for its opposite barely moves an embedding
# ("buy used books" / "sell used books": cosine 0.95) but flips the question.
_OPPOSITE_PAIRS = (
    "buy sell, best worst, good bad, better worse, advantage disadvantage, benefit disadvantage, "
    "increase decrease, gain lose, win lose, male female, man woman, men women, boy girl, boys girls, "
    "husband wife, before after, start stop, open close, legal illegal, possible impossible, right wrong, "
    "true false, love hate, like dislike, rich poor, high low, hot cold, cheap expensive, easy hard, "
    "easy difficult, fast slow, young old, big small, long short, first last, import export, send receive, "
    "positive negative, pass fail, inside outside, add remove, upload download, input output, "
    "minimum maximum, min max, lend borrow, above below, more less, most least, early late, strong weak"
)
_OPPOSITES = frozenset(pair for a, b in (p.split() for p in _OPPOSITE_PAIRS.split(", ")) for pair in ((a, b), (b, a)))
_OPPOSITE_WORDS = frozenset(a for a, _ in _OPPOSITES)
_NUMBER_WORDS = {
    "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
}  # fmt: skip
# "one" is left out on purpose: "How does one ..." is a pronoun, not a count.

_TOKEN = re.compile(r"\w+(?:['’]\w+)*[+#]*|[^\w\s]")
_DIGIT_GROUPS = re.compile(r"(?<=\d)[,_](?=\d{3}\b)")
# Punctuation that never changes a question; any other symbol (+, #, =, ~, a
# CJK character, an emoji) is part of what is asked and must match exactly.
_PLAIN_PUNCTUATION = frozenset(".,?!'\"’‘“”()[]-–—:;/&…`")
_SUFFIXES = ("ies", "es", "s", "ing", "ed", "ly")


@dataclass(frozen=True)
class _Parsed:
    words: tuple[str, ...]  # lower-cased word tokens, apostrophes dropped
    numbers: frozenset[str]
    symbols: frozenset[str]
    negations: int  # counted, not just present: "not ... not" is another claim than "not"
    wh: frozenset[str]
    entities: frozenset[str]
    terms: frozenset[str]  # stemmed key terms


def _parse(text: str) -> _Parsed:
    tokens = _TOKEN.findall(_DIGIT_GROUPS.sub("", text))
    words: list[str] = []
    numbers: set[str] = set()
    symbols: set[str] = set()
    entities: set[str] = set()
    negations = 0
    sentence_start = True
    for token in tokens:
        if not (token[0].isalnum() or token[0] == "_"):
            if token not in _PLAIN_PUNCTUATION:
                symbols.add(token)
            sentence_start = token in ".?!"
            continue
        word = token.lower().replace("'", "").replace("’", "")
        if not word.isascii() or token[-1] in "+#":
            symbols.add(word)  # C++, C#, 画画: spelling is the meaning
        if any(c.isdigit() for c in word):
            numbers.add(word)
        elif word in _NUMBER_WORDS:
            numbers.add(_NUMBER_WORDS[word])
        if word in _NEGATIONS:
            negations += 1
        if _looks_like_name(token, sentence_start) and word not in _STOP and word not in _GENERIC:
            entities.add(_stem(word))
        words.append(word)
        sentence_start = False
    terms = frozenset(
        _stem(w)
        for w in words
        if w not in _STOP
        and w not in _GENERIC
        and w not in _NEGATIONS
        and w not in _NUMBER_WORDS
        and not any(c.isdigit() for c in w)
    )
    return _Parsed(
        words=tuple(words),
        numbers=frozenset(numbers),
        symbols=frozenset(symbols),
        negations=negations,
        wh=frozenset(w for w in words if w in _WH_WORDS),
        entities=frozenset(entities),
        terms=terms,
    )


def _looks_like_name(token: str, sentence_start: bool) -> bool:
    # "Paris", "NASA", "iPhone"; but not the capital that starts every sentence, nor "I".
    if token == "I" or not token[0].isalpha():
        return False
    if any(c.isupper() for c in token[1:]):
        return True
    return token[0].isupper() and not sentence_start


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def _same_term(a: str, b: str) -> bool:
    """Same stem, a longer form of it (learn/learning), or a one-letter typo."""
    if a == b:
        return True
    short, long = sorted((a, b), key=len)
    if len(short) >= 4 and long.startswith(short) and len(long) - len(short) <= 3:
        return True
    return len(short) >= 5 and _one_edit(short, long)


def _one_edit(short: str, long: str) -> bool:
    if len(long) - len(short) > 1:
        return False
    if len(short) == len(long):
        diff = [i for i, (x, y) in enumerate(zip(short, long, strict=True)) if x != y]
        if len(diff) <= 1:
            return True
        # a swap of two neighbours: "teh" / "the"
        i, j = diff[0], diff[-1]
        return len(diff) == 2 and j == i + 1 and short[i] == long[j] and short[j] == long[i]
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def _opposites(a: tuple[str, ...], b: tuple[str, ...]) -> list[str]:
    only_a, only_b = (
        {_singular(w) for w in a} - {_singular(w) for w in b},
        {_singular(w) for w in b} - {_singular(w) for w in a},
    )
    return sorted(f"{x}/{y}" for x in only_a for y in only_b if (x, y) in _OPPOSITES)


def _singular(word: str) -> str:
    # "benefits" -> "benefit", but "less" stays "less": only when the pair list knows the base.
    return word[:-1] if word.endswith("s") and word[:-1] in _OPPOSITE_WORDS else word


def _unmatched(terms: frozenset[str], other: frozenset[str]) -> list[str]:
    return sorted(t for t in terms if not any(_same_term(t, o) for o in other))


@dataclass(frozen=True)
class RuleVerifier:
    """Rejects a candidate whose numbers, symbols, negations, question word, names or key terms differ.

    `max_unmatched_terms` key terms may appear on one side only (a synonym, a
    reworded phrase), but only when the cosine similarity is at least
    `unmatched_min_similarity`; below it every key term must match.
    """

    max_unmatched_terms: int = 2
    unmatched_min_similarity: float = 0.94

    def check(self, query: str, cached: str, similarity: float = 1.0) -> Verdict:
        """Decide whether the answer cached for `cached` may be served for `query`."""
        q, c = _parse(query), _parse(cached)
        if q.numbers != c.numbers:
            return Verdict(False, f"numbers differ: {sorted(q.numbers ^ c.numbers)}")
        if q.symbols != c.symbols:
            return Verdict(False, f"symbols differ: {sorted(q.symbols ^ c.symbols)}")
        if q.negations != c.negations:
            return Verdict(False, "one is negated, the other is not")
        flipped = _opposites(q.words, c.words)
        if flipped:
            return Verdict(False, f"opposite words: {flipped}")
        if q.wh != c.wh:
            return Verdict(False, f"question words differ: {sorted(q.wh ^ c.wh)}")
        names = _unmatched(q.entities, c.terms | c.entities) + _unmatched(c.entities, q.terms | q.entities)
        if names:
            return Verdict(False, f"names differ: {names}")
        unmatched = _unmatched(q.terms, c.terms) + _unmatched(c.terms, q.terms)
        allowed = self.max_unmatched_terms if similarity >= self.unmatched_min_similarity else 0
        if len(unmatched) > allowed:
            return Verdict(False, f"key terms differ: {unmatched}")
        return Verdict(True, "no difference found")


DEFAULT_VERIFIER = RuleVerifier()
