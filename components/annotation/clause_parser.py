"""Motion-only prompts and action phrases from a caption, by word-list rules (the default extractor).

Rule-based extraction, clause by clause:

* subject: reduced to its head noun with a neutral article ("a man in a red shirt" → "a man");
  generic nouns (person, someone, human, figure, individual) become "a person";
* kept: known motion verbs (with auxiliaries: "is walking", "starts to run"), their particles
  ("gets up", "spins around"), manner and direction adverbs ("slowly", "forward", "left"), fixed
  motion phrases ("to the left", "in place", "on hands and knees", "on the ground", "into the air",
  "at a steady pace", "toward the camera"), the direct object of a verb ("kicks a ball", "does a
  backflip") and obstacle phrases introduced by over / onto / off ("jumps over a bench");
* dropped: every other prepositional phrase, which is scene or path ("on a tiled floor", "in a park",
  "near a crate", "in front of a building", "across the park"), clauses headed by a verb outside the
  motion vocabulary ("smiling at the camera"), and colour words inside kept objects.

Deterministic; output is lower case without trailing punctuation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


def _words(text: str) -> frozenset[str]:
    """A word list written as whitespace-separated text."""
    return frozenset(text.split())


# --- vocabulary --------------------------------------------------------------------------------------
MOTION_VERBS: frozenset[str] = _words("""
    walk run jog sprint stroll march stride step hop skip jump leap vault hurdle flip backflip somersault
    cartwheel handstand tumble roll crawl creep climb scramble slide glide dance twirl spin pivot rotate
    twist turn sway shuffle stomp stamp tiptoe limp stagger stumble trip fall collapse dive plunge swim
    skate ski snowboard surf skateboard cycle bike ride row paddle pedal kick punch strike hit box spar
    fight wrestle grapple block dodge duck jab swing wave clap raise lift lower bend bow kneel crouch squat
    lunge stretch reach sit stand rise get lie throw catch toss pitch dribble shoot serve bounce balance
    pose exercise train shake nod hug push pull drag carry hold pick drop grab chase race dash hurry wander
    hike pace flap flail wiggle shimmy flex juggle lean arch rock bob breakdance kickbox mount dismount
    move go come approach enter exit land launch
    """)


# Verbs whose following words are an object even when they look like verbs ("does jumping jacks").
GENERIC_VERBS: frozenset[str] = _words(
    "do perform practice practise execute make take attempt complete demonstrate play"
)


VERBS: frozenset[str] = MOTION_VERBS | GENERIC_VERBS


# Auxiliaries and aspect verbs kept in the prompt when a motion verb follows ("is walking").
AUXILIARIES: frozenset[str] = _words("""
    is are was were be been being am keeps keep kept starts start started begins begin began continues
    continue continued tries try tried can will would could may might
    """)


IRREGULAR: dict[str, str] = {
    "ran": "run", "does": "do", "did": "do", "done": "do", "doing": "do", "goes": "go", "went": "go",
    "gone": "go", "got": "get", "gotten": "get", "rose": "rise", "risen": "rise", "fell": "fall",
    "fallen": "fall", "swam": "swim", "swum": "swim", "threw": "throw", "thrown": "throw",
    "caught": "catch", "sat": "sit", "stood": "stand", "spun": "spin", "leapt": "leap", "swung": "swing",
    "dove": "dive", "lying": "lie", "lay": "lie", "lain": "lie", "rode": "ride", "ridden": "ride",
    "took": "take", "taken": "take", "made": "make", "struck": "strike", "knelt": "kneel", "bent": "bend",
    "slid": "slide", "strode": "stride", "crept": "creep", "fought": "fight", "held": "hold",
    "came": "come", "is": "be", "are": "be", "was": "be", "were": "be", "am": "be", "been": "be",
    "being": "be", "has": "have", "had": "have", "having": "have", "began": "begin", "begun": "begin",
    "kept": "keep",
}  # fmt: skip


PERSON_NOUNS: frozenset[str] = _words("""
    person people man men woman women boy boys girl girls child children kid kids guy guys lady ladies
    gentleman gentlemen teenager teenagers teen teens toddler toddlers baby adult adults athlete athletes
    dancer dancers gymnast gymnasts player players runner runners jogger joggers skater skaters
    skateboarder skateboarders surfer surfers climber climbers swimmer swimmers boxer boxers fighter
    fighters performer performers acrobat acrobats individual individuals someone somebody human humans
    figure figures couple actor actress student students worker workers soldier soldiers father mother
    son daughter grandfather grandmother artist artists ninja cyclist cyclists biker bikers hiker hikers
    """)


GENERIC_PERSON: frozenset[str] = _words("person someone somebody human figure individual")


PLURAL_PERSON: frozenset[str] = frozenset(
    w
    for w in PERSON_NOUNS
    if (w.endswith("s") and w != "actress") or w in {"men", "women", "children", "people", "gentlemen"}
)


DETERMINERS: frozenset[str] = _words(
    "a an the this that these those his her their its my our your another each every both some any"
)


NUMBERS: frozenset[str] = _words("one two three four five six seven eight nine ten several many")


PREPOSITIONS: frozenset[str] = _words("""
    in on at near by beside behind across through along around toward towards into onto over under past
    inside outside within between among against from to off up down with without of for during amid
    alongside beneath below above upon atop via throughout underneath
    """)


# Multi-word location prepositions (always dropped with their noun phrase).
MULTI_PREPOSITIONS: tuple[tuple[str, ...], ...] = tuple(
    tuple(p.split())
    for p in (
        "in front of", "in the middle of", "on top of", "at the edge of", "on the edge of", "next to",
        "close to", "out of", "in the center of", "in the centre of", "on the side of",
    )
)  # fmt: skip


# Particles kept after a verb when no noun phrase follows ("gets up", "spins around").
PARTICLES: frozenset[str] = _words("up down over around about back off out away along aside")


# Prepositions whose noun phrase is an object the body interacts with ("jumps over a bench").
OBSTACLE_PREPOSITIONS: frozenset[str] = frozenset({"over", "onto", "off"})


ADVERBS: frozenset[str] = _words("""
    forward forwards backward backwards sideways left right around away back up down upward upwards
    downward downwards fast quickly slowly still again together hard high low straight ahead aside
    outward inward clockwise counterclockwise anticlockwise apart barefoot once twice
    """)


INTENSIFIERS: frozenset[str] = _words("very extremely fairly quite really rather")


NOT_ADVERBS: frozenset[str] = _words("""
    only early daily family ugly holy lonely friendly silly curly jelly belly rally fly ally apply reply
    supply lovely elderly likely costly hilly woolly chilly bubbly homely july italy
    """)


CONNECTORS: frozenset[str] = _words("and then while as before after until or but also")


# Fixed phrases that describe the motion itself (matched before anything else, longest first).
KEEP_PHRASES: tuple[tuple[str, ...], ...] = tuple(
    sorted(
        (
            tuple(p.split())
            for p in (
                "to the left", "to the right", "to the side", "to one side", "to his left", "to his right",
                "to her left", "to her right", "in place", "on the spot", "in a circle", "in circles",
                "in a circular motion", "on hands and knees", "on his hands and knees",
                "on her hands and knees", "on all fours", "on one leg", "on one foot", "on his back",
                "on her back", "on their backs", "on his stomach", "on her stomach", "on the ground",
                "on the floor", "to the ground", "to the floor", "from the ground", "from the floor",
                "off the ground", "off the floor", "from lying down", "from a lying position",
                "from a sitting position", "from a seated position", "into the air", "in the air",
                "at a steady pace", "at a slow pace", "at a fast pace", "at a brisk pace",
                "at a moderate pace", "at a run", "at full speed", "at high speed", "toward the camera",
                "towards the camera", "away from the camera", "back and forth", "side to side",
                "from side to side", "up and down", "in a forward direction", "in the opposite direction",
                "in a zigzag", "head over heels", "in unison",
            )
        ),
        key=len,
        reverse=True,
    )
)  # fmt: skip


APPEARANCE_WORDS: frozenset[str] = _words("""
    red orange yellow green teal blue purple pink brown black white grey gray dark light bright pale golden
    silver striped plaid checkered colorful colourful beige navy maroon
    """)


# Words before an -ing form that make it a modifier, not a verb ("in running shoes", "a dancing pose").
_NON_VERB_PREV = DETERMINERS | PREPOSITIONS | NUMBERS | {"wearing", "dressed", "wears"}


_TOKEN = re.compile(r"[a-z0-9]+(?:['’-][a-z0-9]+)*|[,;:.!?]")


_COMMAS = {",", ";", ":"}


# --- lemmatiser --------------------------------------------------------------------------------------
def _undouble(stem: str) -> str:
    if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "aeiouwyx":
        return stem[:-1]
    return stem


def lemmatize(word: str) -> str:
    """Base form of an English verb form by rules plus the known vocabulary (walks→walk, running→run)."""
    w = word.lower()
    if w in IRREGULAR:
        return IRREGULAR[w]
    if w in VERBS:
        return w
    candidates: list[str] = []
    if w.endswith("ing") and len(w) > 5:
        stem = w[:-3]
        candidates += [stem, stem + "e", _undouble(stem)]
    elif w.endswith("ied") and len(w) > 4:
        candidates += [w[:-3] + "y"]
    elif w.endswith("ed") and len(w) > 4:
        stem = w[:-2]
        candidates += [stem, w[:-1], _undouble(stem)]
    elif w.endswith("ies") and len(w) > 4:
        candidates += [w[:-3] + "y"]
    elif w.endswith("es") and len(w) > 3:
        candidates += [w[:-1], w[:-2]]
    elif w.endswith("s") and not w.endswith("ss") and len(w) > 3:
        candidates += [w[:-1]]
    for c in candidates:
        if c in VERBS:
            return c
    if not candidates:
        return w
    # unknown word: generic suffix rules
    if w.endswith("ing") or (w.endswith("ed") and not w.endswith("ied")):
        stem = w[:-3] if w.endswith("ing") else w[:-2]
        return stem if stem[-1:] in ("l", "s", "z") else _undouble(stem)
    if w.endswith("es") and w[:-2].endswith(("sh", "ch", "x", "ss", "z")):
        return w[:-2]
    return candidates[0]


def _verb_form(tok: str) -> str | None:
    """'base' | 's' | 'ing' | 'past' when ``tok`` is a form of a known verb, else None."""
    lemma = lemmatize(tok)
    if lemma not in VERBS:
        return None
    if tok == lemma:
        return "base"
    if tok.endswith("ing"):
        return "ing"
    if tok.endswith("s"):
        return "s"
    return "past"


def _is_adverb(tok: str) -> bool:
    if tok in ADVERBS:
        return True
    return len(tok) > 4 and tok.endswith("ly") and tok not in NOT_ADVERBS and tok not in VERBS


# --- parsing -----------------------------------------------------------------------------------------
@dataclass
class _Segment:
    """One clause of the predicate: its connector and its kept parts as (kind, words)."""

    connector: str
    parts: list[tuple[str, list[str]]] = field(default_factory=list)


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("’", "'"))


def _sentences(text: str) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for tok in _tokens(text):
        if tok in (".", "!", "?"):
            out.append([])
        else:
            out[-1].append(tok)
    return [s for s in out if s]


class _Parser:
    """Rule-based parse of one sentence into subject and kept predicate segments."""

    def __init__(self, toks: list[str]) -> None:
        self.t = toks
        self.n = len(toks)

    def at(self, i: int) -> str:
        return self.t[i] if 0 <= i < self.n else ""

    def _aux_at(self, i: int) -> bool:
        """An auxiliary followed (after adverbs) by an -ing/past motion verb or by 'to' + verb."""
        if self.at(i) not in AUXILIARIES:
            return False
        j = i + 1
        while _is_adverb(self.at(j)) or self.at(j) in INTENSIFIERS:
            j += 1
        nxt = self.at(j)
        if nxt == "to":
            return _verb_form(self.at(j + 1)) is not None
        if nxt in AUXILIARIES and nxt != self.at(i):
            return self._aux_at(j)
        form = _verb_form(nxt)
        return form in ("ing", "past") or (form == "base" and self.at(i) not in {"is", "are", "was", "were"})

    def main_verb(self) -> int | None:
        """Index of the main verb (or its auxiliary), or None."""
        weak: int | None = None
        plural_seen = False
        persons = 0
        for i, tok in enumerate(self.t):
            prev = self.at(i - 1)
            persons += tok in PERSON_NOUNS
            if tok in PLURAL_PERSON or persons > 1:  # "two men", "a man and a woman"
                plural_seen = True
            if self._aux_at(i):
                return i
            form = _verb_form(tok)
            if form == "s" and prev not in DETERMINERS | NUMBERS:
                return i
            if form == "ing" and prev not in _NON_VERB_PREV:
                return i
            if weak is None and (
                (form == "past" and prev not in DETERMINERS | NUMBERS)
                or (form == "base" and (prev == "to" or (plural_seen and prev in PERSON_NOUNS)))
            ):
                weak = i
        return weak

    def subject(self, end: int) -> str:
        """The subject's head noun with a neutral article; 'a person' when there is none; two
        coordinated heads ('a man and a woman') are both kept."""
        span = self.t[:end]
        first = next((i for i, w in enumerate(span) if w in PERSON_NOUNS), None)
        if first is not None and "and" in span[first + 1 :]:
            a = span.index("and", first + 1)
            second = next((i for i in range(a + 1, min(a + 4, len(span))) if span[i] in PERSON_NOUNS), None)
            between = span[a + 1 : second] if second is not None else []
            if second is not None and not any(w in PREPOSITIONS or w in _COMMAS for w in between):
                left, right = _Parser(span[:a]), _Parser(span[a + 1 : second + 1])
                return f"{left.subject(a)} and {right.subject(second - a)}"
        head_i = next((i for i, w in enumerate(span) if w in PERSON_NOUNS), None)
        if head_i is None and end == self.n:  # no verb and no person noun: no subject to trust
            return "a person"
        if head_i is None:
            start = 0
            if span and span[0] in PREPOSITIONS and "," in span:
                start = span.index(",") + 1
            cut: list[str] = []
            for w in span[start:]:
                if w in PREPOSITIONS or w in _COMMAS or w in {"wearing", "dressed", "who", "that", "and"}:
                    break
                cut.append(w)
            if not cut or cut[-1] in DETERMINERS | NUMBERS:
                return "a person"
            head_i = start + len(cut) - 1
        head = span[head_i]
        if head in GENERIC_PERSON:
            return "a person"
        quantity = ""
        for w in reversed(span[:head_i]):
            if w in NUMBERS:
                quantity = w
                break
            if w in DETERMINERS or w in PREPOSITIONS or w in _COMMAS:
                break
        if head in {"people", "humans", "figures", "individuals"}:
            return f"{quantity} people".strip()
        if quantity:
            return f"{quantity} {head}"
        if head in PLURAL_PERSON:
            return head
        return ("an " if head[0] in "aeiou" else "a ") + head

    def keep_phrase(self, i: int) -> int:
        """Length of the fixed motion phrase starting at ``i`` (0 if none)."""
        for phrase in KEEP_PHRASES:
            if tuple(self.t[i : i + len(phrase)]) == phrase:
                return len(phrase)
        return 0

    def multi_preposition(self, i: int) -> int:
        for phrase in MULTI_PREPOSITIONS:
            if tuple(self.t[i : i + len(phrase)]) == phrase:
                return len(phrase)
        return 0

    def connector(self, i: int) -> tuple[list[str], int]:
        """Connector words from ``i`` (a comma and/or and/then/while…) and the index after them."""
        words: list[str] = []
        j = i
        while j < self.n and (self.t[j] in _COMMAS or self.t[j] in CONNECTORS) and len(words) < 3:
            words.append(self.t[j])
            j += 1
        return words, j

    def starts_clause(self, j: int) -> bool:
        """True when a (known-verb) clause starts at ``j``, possibly after adverbs."""
        while _is_adverb(self.at(j)) or self.at(j) in INTENSIFIERS:
            j += 1
        return self._aux_at(j) or _verb_form(self.at(j)) is not None

    def predicate(self, start: int) -> list[_Segment]:
        """Kept segments of the predicate from the main verb at ``start``."""
        segs = [_Segment("")]
        mode = "start"  # start | verb | object | drop | after
        last_verb = ""
        content = 0  # content words in the current object / dropped phrase
        i = start
        while i < self.n:
            tok, cur = self.t[i], segs[-1]
            k = self.keep_phrase(i)
            if k:
                cur.parts.append(("keep", self.t[i : i + k]))
                i, mode = i + k, "after"
                continue
            if tok in _COMMAS or tok in CONNECTORS:
                words, j = self.connector(i)
                if self.starts_clause(j):
                    conn = " ".join(w for w in words if w not in _COMMAS)
                    lead = "," if any(w in _COMMAS for w in words) else ""
                    segs.append(_Segment(f"{lead} {conn}".strip() if conn else lead))
                    i, mode = j, "start"
                    continue
                nxt = self.at(j)
                if (
                    mode in ("verb", "after")
                    and words[-1] == "and"
                    and (_is_adverb(nxt) or nxt in INTENSIFIERS)
                    and cur.parts
                    and cur.parts[-1][0] in ("adverb", "keep")
                ):
                    cur.parts.append(("conj", ["and"]))
                elif mode == "object" and words == ["and"] and nxt not in PREPOSITIONS:
                    cur.parts[-1][1].append("and")
                elif any(w in _COMMAS for w in words) and mode in ("object", "drop"):
                    mode = "after"
                i = j
                continue
            form = _verb_form(tok)
            if mode in ("start", "aux"):
                if self._aux_at(i) and mode == "start":
                    cur.parts.append(("aux", [tok]))
                    i, mode = i + 1, "start"
                    continue
                if tok == "to" and _verb_form(self.at(i + 1)):
                    cur.parts.append(("aux", [tok]))
                    i += 1
                    continue
                if form is not None:
                    cur.parts.append(("verb", [tok]))
                    last_verb, mode = lemmatize(tok), "verb"
                    i += 1
                    continue
            if (
                mode in ("object", "drop")
                and content
                and (form == "ing" or (form == "s" and self.at(i - 1) not in DETERMINERS | NUMBERS))
            ):
                segs.append(_Segment(""))  # a new clause without a connector ("holding a baby walks")
                mode = "start"
                continue
            if mode == "object" and not content:
                cur.parts[-1][1].append(tok)
                content += tok not in DETERMINERS | NUMBERS
                i += 1
                continue
            if mode == "drop" and not content:
                content += tok not in DETERMINERS | NUMBERS
                i += 1
                continue
            if tok in INTENSIFIERS and _is_adverb(self.at(i + 1)):
                cur.parts.append(("adverb", [tok, self.at(i + 1)]))
                i, mode = i + 2, "after"
                continue
            if _is_adverb(tok) and not (tok in PARTICLES and self._np_follows(i + 1)):
                kind = "particle" if tok in PARTICLES and mode == "verb" else "adverb"
                cur.parts.append((kind, [tok]))
                i += 1
                if mode not in ("start", "aux"):
                    mode = "verb" if kind == "particle" else "after"
                continue
            if form == "ing" and mode in ("verb", "after") and last_verb not in GENERIC_VERBS:
                cur.parts.append(("verb", [tok]))  # "goes running", "walks turning left"
                last_verb, mode = lemmatize(tok), "verb"
                i += 1
                continue
            m = self.multi_preposition(i)
            if m:
                i, mode, content = i + m, "drop", 0
                continue
            if tok in PREPOSITIONS:
                if tok == "of" and mode in ("object", "drop"):
                    if mode == "object":
                        cur.parts[-1][1].append(tok)
                    i, content = i + 1, 0
                    continue
                if tok in PARTICLES and mode == "verb" and not self._np_follows(i + 1):
                    cur.parts.append(("particle", [tok]))
                    i += 1
                    continue
                if tok == "to" and _verb_form(self.at(i + 1)):
                    cur.parts.append(("aux", [tok]))
                    i, mode = i + 1, "aux"
                    continue
                if (
                    tok in OBSTACLE_PREPOSITIONS
                    and mode in ("verb", "after")
                    and last_verb in MOTION_VERBS
                    and self._np_follows(i + 1)
                ):
                    cur.parts.append(("obstacle", [tok]))
                    i, mode, content = i + 1, "object", 0
                    continue
                i, mode, content = i + 1, "drop", 0
                continue
            if mode == "verb":  # direct object of the verb
                cur.parts.append(("object", [tok]))
                content = int(tok not in DETERMINERS | NUMBERS)
                i, mode = i + 1, "object"
                continue
            if mode == "object":
                cur.parts[-1][1].append(tok)
                i += 1
                continue
            # anything else (scene words, unknown verbs, appearance) is dropped up to the next boundary
            if mode != "drop":
                mode, content = "drop", 1
            i += 1
        return [s for s in segs if any(kind == "verb" for kind, _ in s.parts)]

    def _np_follows(self, j: int) -> bool:
        """True when a noun phrase (not a boundary, adverb or preposition) starts at ``j``."""
        tok = self.at(j)
        if not tok or tok in _COMMAS or tok in CONNECTORS or tok in PREPOSITIONS:
            return False
        if self.keep_phrase(j):
            return False
        return not (_is_adverb(tok) and tok not in DETERMINERS)


def _object_words(words: list[str]) -> list[str]:
    return [w for w in words if w not in APPEARANCE_WORDS]


def _render(segments: list[_Segment]) -> str:
    out = ""
    for seg in segments:
        words: list[str] = []
        for kind, ws in seg.parts:
            words += _object_words(ws) if kind in ("object", "obstacle") else ws
        body = " ".join(words)
        if not out:
            out = body
        elif seg.connector.startswith(","):
            out += f"{seg.connector} {body}"
        else:
            out += f" {seg.connector} {body}" if seg.connector else f" {body}"
    return re.sub(r"\s+", " ", out).strip()


def _front_participle_last(toks: list[str]) -> list[str]:
    """'walking slowly, a man waves' → 'a man waves, walking slowly' (sentence-initial participle)."""
    if not toks or _verb_form(toks[0]) != "ing" or "," not in toks:
        return toks
    c = toks.index(",")
    rest = toks[c + 1 :]
    if not any(w in PERSON_NOUNS for w in rest):
        return toks
    return [*rest, ",", *toks[:c]]


def _parse(caption: str) -> tuple[str, list[list[_Segment]]]:
    """Subject of the first sentence and the kept segments of every sentence."""
    subject = "a person"
    sentences: list[list[_Segment]] = []
    for k, toks in enumerate(_sentences(caption)):
        toks = _front_participle_last(toks)
        p = _Parser(toks)
        v = p.main_verb()
        if k == 0:
            subject = p.subject(v if v is not None else len(toks))
        sentences.append(p.predicate(v) if v is not None else [])
    return subject, sentences


def extract_motion_prompt(caption: str) -> str:
    """Motion-only prompt: neutral subject + motion verbs, particles, adverbs, directions, objects."""
    subject, sentences = _parse(caption)
    bodies = [_render(segs) for segs in sentences]
    bodies = [b for b in bodies if b]
    text = subject + (" " + " and ".join(bodies) if bodies else "")
    return text.strip(" ,;:")


def _normalise_object(words: list[str]) -> list[str]:
    words = _object_words(words)
    if not words:
        return []
    body = [w for w in words if w not in DETERMINERS]
    if not body:
        return []
    if words[0] in DETERMINERS and words[0] not in {"some", "any", "both"}:
        plural = body[-1].endswith("s") and not body[-1].endswith("ss")
        return body if plural else ["a", *body]
    return body


def action_phrases(caption: str) -> list[str]:
    """Unique lemmatised verb (+ particle, + object) phrases of a caption: 'walk', 'get up', 'do a
    backflip', 'jump over a bench' — the paper's 'verb and verb-object phrases'."""
    _, sentences = _parse(caption)
    out: list[str] = []
    for segs in sentences:
        for seg in segs:
            parts = seg.parts
            for i, (kind, ws) in enumerate(parts):
                if kind != "verb":
                    continue
                lemma = lemmatize(ws[0])
                phrase = [lemma]
                j = i + 1
                while j < len(parts) and parts[j][0] == "particle":
                    phrase += parts[j][1]
                    j += 1
                if j < len(parts):
                    nkind, nws = parts[j]
                    if nkind == "adverb" and lemma == "turn" and nws[0] in ("left", "right"):
                        phrase.append(nws[0])
                    elif nkind == "object":
                        phrase += _normalise_object(nws)
                    elif nkind == "obstacle":
                        phrase += [nws[0], *_normalise_object(nws[1:])]
                text = " ".join(phrase)
                if text not in out:
                    out.append(text)
    return out
