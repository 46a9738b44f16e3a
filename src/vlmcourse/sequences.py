"""Synthetic sequence-to-sequence tasks and a tiny character tokenizer (module 03), and ``pad_rows``,
the padding of token-id lists into a batch that modules 03, 12 and 13 share.

Everything is generated on the fly from a seed: no download, identical on every machine.

Tasks (source -> target):

* ``"reverse"``: ``"dbca"`` -> ``"acbd"``;
* ``"sort"``: ``"dbca"`` -> ``"abcd"``;
* ``"dates"``: ``"17 mar 2024"`` -> ``"2024-03-17"`` (a small "translation" with reordering).

Token ids 0, 1, 2 are the specials ``PAD``, ``BOS`` and ``EOS``; characters follow.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

import torch

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
LETTERS = "abcdefghijklmnopqrst"
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DATE_ALPHABET = "0123456789- abcdefgjlmnoprstuvy"
TASKS = ("reverse", "sort", "dates")


class CharTokenizer:
    """Maps characters of a fixed alphabet to ids 3, 4, ...; ids 0-2 are PAD, BOS, EOS."""

    def __init__(self, alphabet: str) -> None:
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("alphabet has repeated characters")
        self.alphabet = alphabet
        self.itos: list[str] = list(SPECIALS) + list(alphabet)
        self.stoi: dict[str, int] = {ch: i for i, ch in enumerate(self.itos) if i >= len(SPECIALS)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of ``text``, optionally wrapped in BOS ... EOS."""
        try:
            ids = [self.stoi[ch] for ch in text]
        except KeyError as error:
            raise ValueError(f"character {error.args[0]!r} is not in the alphabet") from None
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``: skips PAD and BOS, stops at the first EOS."""
        chars = []
        for token in ids:
            token = int(token)
            if token == EOS:
                break
            if token >= len(SPECIALS):
                chars.append(self.itos[token])
        return "".join(chars)

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """Readable token strings (specials included), e.g. for plot labels."""
        return [self.itos[int(i)] for i in ids]


def tokenizer_for(task: str) -> CharTokenizer:
    """The tokenizer whose alphabet covers ``task``."""
    _check_task(task)
    return CharTokenizer(DATE_ALPHABET if task == "dates" else LETTERS)


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")


def _random_date(rng: random.Random) -> tuple[str, str]:
    year, month, day = rng.randint(1900, 2099), rng.randint(1, 12), rng.randint(1, 28)
    return f"{day} {MONTHS[month - 1]} {year}", f"{year:04d}-{month:02d}-{day:02d}"


def make_pairs(task: str, count: int, *, min_len: int = 4, max_len: int = 10, seed: int = 0,
               exclude: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``count`` distinct (source, target) pairs of ``task``; sources in ``exclude`` are skipped.

    ``min_len``/``max_len`` bound the source length of "reverse" and "sort" (letters ``a``-``t``).
    """
    _check_task(task)
    if not 1 <= min_len <= max_len:
        raise ValueError("need 1 <= min_len <= max_len")
    rng = random.Random(seed)
    seen = set(exclude)
    pairs: list[tuple[str, str]] = []
    attempts = 0
    while len(pairs) < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            raise ValueError("cannot draw that many distinct sequences; widen the lengths")
        if task == "dates":
            source, target = _random_date(rng)
        else:
            source = "".join(rng.choice(LETTERS) for _ in range(rng.randint(min_len, max_len)))
            target = source[::-1] if task == "reverse" else "".join(sorted(source))
        if source in seen:
            continue
        seen.add(source)
        pairs.append((source, target))
    return pairs


def train_test_pairs(task: str, n_train: int, n_test: int, *, min_len: int = 4, max_len: int = 10,
                     seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Disjoint training and held-out pairs: no held-out source occurs in the training set."""
    test = make_pairs(task, n_test, min_len=min_len, max_len=max_len, seed=seed + 1)
    train = make_pairs(task, n_train, min_len=min_len, max_len=max_len, seed=seed,
                       exclude=(source for source, _ in test))
    return train, test


def pad_rows(rows: Sequence[Sequence[int]], pad: int = PAD, max_len: int | None = None) -> torch.Tensor:
    """Stack id lists into a (count, width) long tensor, right-padded with ``pad``.

    The width is the longest row's length, or ``max_len`` when given (longer rows are then cut to it).
    """
    width = max((len(r) for r in rows), default=0) if max_len is None else max_len
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for index, row in enumerate(rows):
        ids = list(row)[:width]
        out[index, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
    return out


def encode_pairs(pairs: Sequence[tuple[str, str]],
                 tokenizer: CharTokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Source ids (count, S) and target ids (count, T) = BOS target EOS, both right-padded with PAD."""
    sources = pad_rows([tokenizer.encode(s) for s, _ in pairs])
    targets = pad_rows([tokenizer.encode(t, bos=True, eos=True) for _, t in pairs])
    return sources, targets


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of predictions equal to their reference string."""
    if len(predictions) != len(references):
        raise ValueError("predictions and references differ in length")
    return sum(p == r for p, r in zip(predictions, references)) / max(len(references), 1)
