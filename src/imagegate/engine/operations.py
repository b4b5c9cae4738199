"""What a prompt asks for: the table of operations the engine understands, and the parser that reads them.

Parsing is keyword matching, case-insensitive, in prompt order. Each operation has one regular expression
of its synonyms; where matches overlap the leftmost, then longest, wins ("less saturated" is desaturate,
not saturate). A match just after a negation ("don't blur", "without blurring") is dropped. Repeats of one
operation with no separator between them are one mention ("flip it upside down", "pencil sketch drawing").

At most MAX_STEPS operations are applied, the first ones; later ones are ignored, so that a long prompt
repeating "blur, blur, ..." cannot hold a worker for minutes.

Parameters are read from the words around a match, up to the nearest separator (",", ";", ".", "and",
"then", ...): intensity words ("slightly", "strongly"), numbers ("rotate 270", "blur 8",
"posterize 3 levels") and directions ("rotate left", "flip vertically").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from imagegate.engine import filters
from imagegate.engine.filters import Pixels

MAX_STEPS = 16

Kind = Literal["tone", "geometry", "fill"]
"""tone: RGB → RGB of the same shape; geometry: moves pixels, applied alike to colour, alpha and mask;
fill: inpaint the region to edit (no pixel function of its own)."""


class UnsupportedPrompt(Exception):
    """No operation in the prompt was understood."""

    understood: tuple[str, ...]

    def __init__(self, understood: tuple[str, ...]) -> None:
        self.understood = understood
        names = ", ".join(understood)
        super().__init__(f"The prompt names no edit the local engine understands. Try one of: {names}.")


@dataclass(frozen=True, slots=True)
class Step:
    """One operation read from the prompt, its parameters already bound into `apply`."""

    name: str
    kind: Kind
    apply: Callable[[Pixels], Pixels]


@dataclass(frozen=True, slots=True)
class Clause:
    """The words of one mention: the match itself and its neighbours up to the nearest separators."""

    before: str
    text: str
    after: str

    def says(self, pattern: str) -> bool:
        return re.search(pattern, f"{self.before} {self.text} {self.after}") is not None

    def intensity(self) -> float:
        """0.5 for 'slightly', 2 for 'strongly', else 1; the match's own words are not counted."""
        around = f"{self.before} {self.after}"
        if re.search(_SLIGHT, around):
            return 0.5
        if re.search(_STRONG, around):
            return 2.0
        return 1.0

    def number(self) -> float | None:
        """The first number after the keyword, else the last one before it."""
        found = _NUMBER.findall(f"{self.text} {self.after}") or _NUMBER.findall(self.before)[-1:]
        return float(found[0]) if found else None


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    kind: Kind
    pattern: str  # synonyms, matched against the lower-cased prompt
    build: Callable[[Clause], Callable[[Pixels], Pixels]]
    object_form: str | None = None  # a match that is only this counts when no other operation precedes
    # it in its clause: the "edges" of "sharpen the edges" are what to sharpen, not an edge detection


_SLIGHT = (
    r"\b(?:slight(?:ly)?|a\s+(?:little|bit|touch|tad)|subtle|subtly|light|lightly|gentl[ey]|mild(?:ly)?|"
    r"somewhat)\b"
)
_STRONG = (
    r"\b(?:strong(?:ly)?|heav(?:y|ily)|very|a\s+lot|lots|much|extreme(?:ly)?|intense(?:ly)?|really|"
    r"significantly|massively|super)\b"
)
_NUMBER = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)")
_SEPARATOR = re.compile(r"[,;!?]|\.(?!\d)|\b(?:and|then|plus|also|after\s+that|afterwards|next|finally)\b")
_NEGATION = re.compile(r"\b(?:no|not|don'?t|do\s+not|never|without|avoid)\s+(?:\w+\s+)?$")
_NEGATION_REACH = 40  # characters before a match searched for a negation
_LESS = r"\b(?:less|lower|low|reduce[ds]?|decrease[ds]?|soften|tone\s+down)\b"
_VERTICAL = r"vertical|upside|top\s+to\s+bottom|up\s*-?\s*down"
_COUNTER = r"counter-?\s*clockwise|anti-?\s*clockwise|\bccw\b|\bleft\b"


def _rotation(clause: Clause) -> Callable[[Pixels], Pixels]:
    number = clause.number()
    degrees = 90.0 if number is None else number
    if clause.says(_COUNTER):
        degrees = -degrees
    return lambda pixels: filters.rotate(pixels, degrees)


def _flip(clause: Clause) -> Callable[[Pixels], Pixels]:
    vertical = clause.says(_VERTICAL)
    return lambda pixels: filters.flip(pixels, vertical=vertical)


def _blur(clause: Clause) -> Callable[[Pixels], Pixels]:
    radius = clause.number()
    strength = clause.intensity()
    if radius is not None and radius > 0:
        return lambda rgb: filters.blur(rgb, radius)
    return lambda rgb: filters.blur(rgb, strength * filters.scale_of(rgb))


def _contrast(clause: Clause) -> Callable[[Pixels], Pixels]:
    factor = 1 + 0.4 * clause.intensity()
    if re.search(_LESS, clause.text):
        factor = 1 / factor
    return lambda rgb: filters.contrast(rgb, factor)


def _posterize(clause: Clause) -> Callable[[Pixels], Pixels]:
    number = clause.number()
    levels = 4 if number is None else round(number)
    return lambda rgb: filters.posterize(rgb, levels)


def _fixed(function: Callable[[Pixels], Pixels]) -> Callable[[Clause], Callable[[Pixels], Pixels]]:
    return lambda _clause: function


def _scaled(
    function: Callable[[Pixels, float], Pixels], per_unit: float, limit: float
) -> Callable[[Clause], Callable[[Pixels], Pixels]]:
    """An operation whose amount is `per_unit` times the clause's intensity, capped at `limit`."""

    def build(clause: Clause) -> Callable[[Pixels], Pixels]:
        amount = min(limit, per_unit * clause.intensity())
        return lambda rgb: function(rgb, amount)

    return build


def _identity(pixels: Pixels) -> Pixels:
    return pixels


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "grayscale",
        "tone",
        r"\bgr[ae]y\s*-?\s*scaled?\b|\bblack\s*(?:and|&|n|-)\s*white\b|\bb\s*[&/]\s*w\b|\bmonochrom\w*",
        _fixed(filters.grayscale),
    ),
    Operation(
        "sepia",
        "tone",
        r"\bsepia\b|\bvintage\b|\bantique\b|\bretro\b|\bold[\s-]+photo\w*",
        _fixed(filters.sepia),
    ),
    Operation("invert", "tone", r"\binvert\w*|\binverse\b|\bnegative\b", _fixed(filters.invert)),
    Operation("blur", "tone", r"\bblur\w*|\bde-?focus\w*|\bbokeh\b", _blur),
    Operation(
        "sharpen",
        "tone",
        r"\bsharpen\w*|\bsharper\b|\bcrisp(?:er)?\b|\b(?:de|un)-?blur\w*|\benhance\s+(?:the\s+)?details?\b",
        _scaled(filters.sharpen, 1.0, 3.0),
    ),
    Operation(
        "brighter",
        "tone",
        r"\bbright(?:er|en\w*|ness)?\b|\blight(?:er|en\w*)\b|\b(?:more|increase\w*)\s+(?:the\s+)?exposure\b",
        _scaled(filters.lighten, 0.25, 0.8),
    ),
    Operation(
        "darker",
        "tone",
        r"\bdark(?:er|en\w*)?\b|\bdimm?(?:er)?\b|\bless\s+bright\b"
        r"|\b(?:reduce|lower|decrease)\w*\s+(?:the\s+)?(?:brightness|exposure)\b",
        _scaled(filters.darken, 0.25, 0.8),
    ),
    Operation(
        "contrast",
        "tone",
        r"\b(?:(?:more|less|higher|lower|high|low|increase\w*|reduce\w*|decrease\w*|boost\w*|add|raise)\s+"
        r"(?:the\s+)?)?contrast\w*",
        _contrast,
    ),
    Operation(
        "rotate",
        "geometry",
        r"\brotat\w*|\bturn(?:ed)?\s+(?:it\s+|the\s+\w+\s+)?(?:by\s+)?"
        r"(?=-?\d|left|right|clockwise|counter|anti|sideways)",
        _rotation,
    ),
    Operation("flip", "geometry", r"\bflip\w*|\bupside[\s-]+down\b", _flip),
    Operation("mirror", "geometry", r"\bmirror\w*", _flip),
    Operation(
        "pencil sketch",
        "tone",
        r"\bpencil(?:\s+(?:sketch|drawing))?\b|\bsketch\w*|\bdrawing\b|\bcharcoal\b",
        _fixed(filters.pencil_sketch),
    ),
    Operation("cartoon", "tone", r"\bcartoon\w*|\bcomic\w*|\btoon\b", _fixed(filters.cartoon)),
    Operation("posterize", "tone", r"\bposteri[sz]\w*|\bposter\s+effect\b", _posterize),
    Operation("emboss", "tone", r"\bemboss\w*|\brelief\b", _fixed(filters.emboss)),
    Operation(
        "edge",
        "tone",
        r"\bedge\s+detect\w*|\bedges?\b|\boutlines?\b|\bcontours?\b",
        _fixed(filters.edges),
        object_form=r"edges?|outlines?|contours?",
    ),
    Operation(
        "remove",
        "fill",
        r"\bremov\w*|\berase\w*|\bdelet\w*|\binpaint\w*|\bfill(?:ed|ing)?(?:\s+in)?\b|\bget\s+rid\s+of\b"
        r"|\bclean\s+up\b",
        _fixed(_identity),
    ),
    Operation(
        "saturate",
        "tone",
        r"\b(?:more\s+|increase\w*\s+(?:the\s+)?|boost\w*\s+(?:the\s+)?)?saturat(?:e|ed|ion)\b|\bvivid\b"
        r"|\bvibrant\b|\b(?:more\s+)?colou?rful\b",
        _scaled(lambda rgb, amount: filters.saturation(rgb, 1 + amount), 0.6, 2.0),
    ),
    Operation(
        "desaturate",
        "tone",
        r"\bdesaturat\w*|\b(?:less|reduce\w*|lower\w*|decrease\w*)\s+(?:the\s+)?saturat(?:ed|ion)\b"
        r"|\bmuted\b|\bwashed[\s-]+out\b",
        _scaled(lambda rgb, amount: filters.saturation(rgb, 1 - amount), 0.5, 0.9),
    ),
)

_PATTERNS = tuple((operation, re.compile(operation.pattern)) for operation in OPERATIONS)


def understood_operations() -> tuple[str, ...]:
    """The operation names the engine understands, in table order."""
    return tuple(operation.name for operation in OPERATIONS)


@dataclass(slots=True)
class _Mention:
    operation: Operation
    start: int
    end: int


def _mentions(prompt: str) -> list[_Mention]:
    """Every non-negated match, leftmost-longest, repeats without a separator between them merged."""
    found = sorted(
        (
            _Mention(operation, match.start(), match.end())
            for operation, pattern in _PATTERNS
            for match in pattern.finditer(prompt)
            if match.end() > match.start()
        ),
        key=lambda mention: (mention.start, -mention.end),
    )
    kept: list[_Mention] = []
    for mention in found:
        if kept and mention.start < kept[-1].end:
            continue
        if _NEGATION.search(prompt, max(0, mention.start - _NEGATION_REACH), mention.start):
            continue
        previous = kept[-1] if kept else None
        if previous is None or _SEPARATOR.search(prompt[previous.end : mention.start]):
            kept.append(mention)
        elif previous.operation is mention.operation:
            previous.end = mention.end
        elif not _is_object(mention, prompt):
            kept.append(mention)
    return kept


def _is_object(mention: _Mention, prompt: str) -> bool:
    form = mention.operation.object_form
    return form is not None and re.fullmatch(form, prompt[mention.start : mention.end]) is not None


def _clause(prompt: str, mentions: list[_Mention], index: int) -> Clause:
    mention = mentions[index]
    gap_before = prompt[mentions[index - 1].end if index else 0 : mention.start]
    gap_after = prompt[mention.end : mentions[index + 1].start if index + 1 < len(mentions) else len(prompt)]
    before = _SEPARATOR.split(gap_before)[-1]
    after = _SEPARATOR.split(gap_after)[0]
    return Clause(before=before, text=prompt[mention.start : mention.end], after=after)


def parse_prompt(prompt: str) -> list[Step]:
    """The operations the prompt asks for, in prompt order. Raises UnsupportedPrompt when there are none."""
    text = " ".join(prompt.lower().split())
    mentions = _mentions(text)
    if not mentions:
        raise UnsupportedPrompt(understood_operations())
    steps: list[Step] = []
    for index, mention in enumerate(mentions[:MAX_STEPS]):
        operation = mention.operation
        steps.append(Step(operation.name, operation.kind, operation.build(_clause(text, mentions, index))))
    return steps
