"""The words of a text a model's tokenizer does not know, and what a small vocabulary does know.

A word-level vocabulary (the built-in models': about 40 Shapes World words) turns every other
word into the unknown token, so "is this a photo of a sunset?" reaches the model as
"is [UNK] a [UNK] [UNK] a [UNK]?" and it answers a guess about the words left. A subword
tokenizer (BERT's, CLIP's) rarely has such a word: an emoji, a character outside its alphabet.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from pathlib import Path
from typing import Sequence

from mmstudio.models.base import KnownWords, Task
from mmstudio.world.texts import CAPTION_FORM, DESCRIBE, QUESTION_FORMS
from mmstudio.world.vocab import ABSENT_ANSWER, COLORS, EXTRA_COLORS, EXTRA_SHAPES, SHAPES, SIZES, all_words, plural

# The trainer's record in a folder it wrote (training/checkpoints.RUN_RECORD; models know nothing of training).
TRAINED_HERE = "mmstudio.json"
# Our trained models have tens of words; a hub model's vocabulary has tens of thousands of pieces.
SMALL_VOCABULARY = 1000


def is_word(text: str) -> bool:
    """Letters, digits or a pictograph (an emoji); punctuation and symbols such as "+" or "$" are not words."""
    return any(ch.isalnum() or unicodedata.category(ch) == "So" for ch in text)


def unknown_words(tokenizer, texts: Sequence[str]) -> list[tuple[str, ...]]:
    """For each text, the words (as typed, first occurrence, in order) that became only unknown tokens."""
    unk = getattr(tokenizer, "unk_token_id", None)
    texts = list(texts)
    if unk is None or not texts:
        return [() for _ in texts]
    if not getattr(tokenizer, "is_fast", False):
        return [_unknown_slow(tokenizer, text, unk) for text in texts]
    # The whole text, not truncated: a word past the model's limit is still one the user typed.
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
    found = []
    for b, text in enumerate(texts):
        spans: dict[int, list] = {}  # word index -> [start, end, every token unknown]
        for token, word, (start, end) in zip(enc["input_ids"][b], enc.word_ids(b), enc["offset_mapping"][b]):
            if word is None:
                continue
            span = spans.setdefault(word, [start, end, True])
            span[0], span[1], span[2] = min(span[0], start), max(span[1], end), span[2] and token == unk
        words = (text[start:end] for start, end, unknown in spans.values() if unknown)
        found.append(tuple(dict.fromkeys(w for w in words if is_word(w))))
    return found


def _unknown_slow(tokenizer, text: str, unk: int) -> tuple[str, ...]:
    # No offsets without the Rust tokenizer: each run of letters and each other character on its own.
    words = []
    for chunk in re.findall(r"\w+|[^\w\s]", text):
        ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(chunk))
        if ids and all(i == unk for i in ids) and is_word(chunk):
            words.append(chunk)
    return tuple(dict.fromkeys(words))


def known_words(tokenizer, folder, tasks: frozenset[Task]) -> KnownWords | None:
    """What the model of `folder` knows, when it is one of ours with a small vocabulary; else None (a hub model)."""
    if not (Path(folder) / TRAINED_HERE).is_file() or len(tokenizer) > SMALL_VOCABULARY:
        return None
    special = set(tokenizer.all_special_tokens)
    # (a chat model's turn markers, <user> and <assistant>, are tokens no one types: not words)
    vocab = {w for w in tokenizer.get_vocab() if w not in special and not w.startswith("##") and is_word(w)
             and not re.fullmatch(r"<\w+>", w)}
    shapes = tuple(s for s in SHAPES if s in vocab)
    colors = tuple(c for c in COLORS if c in vocab)
    sizes = tuple(s for s in SIZES if s in vocab)
    extra = tuple(w for w in (*EXTRA_SHAPES, *EXTRA_COLORS) if w in vocab)
    world = set(all_words((*SHAPES, *EXTRA_SHAPES), (*COLORS, *EXTRA_COLORS))) | {ABSENT_ANSWER}
    world |= set(_plain(DESCRIBE).split())  # the chat model's request for a caption
    forms = QUESTION_FORMS if Task.VQA in tasks else (CAPTION_FORM,) if Task.ITM in tasks else ()
    fill = _fill(shapes, colors, sizes)
    examples = [text for text in (_example(form, fill) for form in forms)
                if text is not None and all(w in vocab for w in re.findall(r"\w+", text))]
    return KnownWords(shapes, colors, sizes, extra, tuple(sorted(vocab - world)), tuple(examples))


def _fill(shapes: tuple[str, ...], colors: tuple[str, ...], sizes: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The words each {kind} of a text form may take."""
    return {"shape": shapes, "shapes": tuple(plural(s) for s in shapes), "color": colors, "size": sizes}


def _example(form: str, fill: dict[str, tuple[str, ...]]) -> str | None:
    """The form with its n-th {kind} the n-th word of that kind (a caption of two different objects); None
    where the vocabulary has too few."""
    used: dict[str, int] = {}

    def word(match: re.Match) -> str:
        kind = match.group(1)
        n = used[kind] = used.get(kind, -1) + 1
        return fill[kind][n]

    try:
        return re.sub(r"\{(\w+)\}", word, form)
    except IndexError:
        return None


def familiar_question(question: str, known: KnownWords | None) -> bool | None:
    """Whether the question is one the model was trained on: a Shapes World form (QUESTION_FORMS) in its words,
    punctuation and case aside. Another form in known words ("is there a star?") still gets an answer, as
    confident as any and often a guess. None where the model does not say: not one of our small-vocabulary
    models, or one that learned a user's own words (and with them, maybe forms of its own)."""
    if known is None or known.other:
        return None
    return _plain(question) in _familiar(known)


def _plain(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


@functools.lru_cache(maxsize=16)
def _familiar(known: KnownWords) -> frozenset[str]:
    """Every question of the world's forms in the model's words (a few hundred), and the chat model's request."""
    shapes = known.shapes + tuple(w for w in known.extra if w in EXTRA_SHAPES)
    colors = known.colors + tuple(w for w in known.extra if w in EXTRA_COLORS)
    fill = _fill(shapes, colors, known.sizes)
    texts = {_plain(DESCRIBE)}
    for form in QUESTION_FORMS:
        for words in itertools.product(*(fill[kind] for kind in re.findall(r"\{(\w+)\}", form))):
            texts.add(_plain(re.sub(r"\{\w+\}", "{}", form).format(*words)))
    return frozenset(texts)


def unfamiliar(known: KnownWords | None) -> str:
    """The caution under an answer to a question of another form than the model learned."""
    line = "not a question of a form the model was trained on: the answer may be a guess"
    if known is not None and known.examples:
        line += "; it knows questions like " + ", ".join(f"“{e}”" for e in known.examples)
    return line


def not_understood(words: Sequence[str], known: KnownWords | None) -> str:
    """The line that says so: "not understood: photo, sunset (the model knows shapes: ...)"."""
    line = "not understood: " + ", ".join(words)
    return f"{line} (the model knows {known.text()})" if known is not None else line
