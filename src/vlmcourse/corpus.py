"""An offline English text corpus, a character tokenizer and language-model batches (module 04).

The corpus is derived at run time from Python's standard library: ``pydoc_data.topics`` holds the
text of the Python language reference shown by ``help()`` (about 460 000 characters of English prose
with code examples). Nothing is downloaded and no file is shipped; the text is identical for a given
Python version (it changes slightly between Python releases).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

import torch

UNKNOWN = "\x00"  # the character that replaces rare characters in the char-level vocabulary


def python_docs_text() -> str:
    """The Python language-reference topics from ``pydoc_data``, in a fixed order, whitespace-normalised."""
    from pydoc_data.topics import topics

    parts = []
    for key in sorted(topics):
        text = unicodedata.normalize("NFKC", topics[key]).replace("\t", "    ")
        text = re.sub(r"[ ]{2,}", " ", text)  # long indentation runs carry little information
        text = re.sub(r"\n{3,}", "\n\n", text)
        parts.append(text.strip())
    return "\n\n".join(parts)


class CharVocab:
    """Character-level tokenizer; characters seen fewer than ``min_count`` times map to one UNKNOWN id."""

    def __init__(self, text: str, min_count: int = 1) -> None:
        counts = Counter(text)
        kept = sorted(ch for ch, n in counts.items() if n >= min_count and ch != UNKNOWN)
        self.itos: list[str] = [UNKNOWN] + kept
        self.stoi: dict[str, int] = {ch: i for i, ch in enumerate(self.itos)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> torch.Tensor:
        """(len(text),) long tensor of ids; unknown characters get id 0."""
        return torch.tensor([self.stoi.get(ch, 0) for ch in text], dtype=torch.long)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        return "".join(self.itos[int(i)] for i in ids)


def split_ids(ids: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Contiguous split: the first part for training, the last ``val_fraction`` for validation."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError("val_fraction must be in (0, 1)")
    cut = int(len(ids) * (1.0 - val_fraction))
    return ids[:cut], ids[cut:]


def lm_batch(ids: torch.Tensor, batch_size: int, context: int,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows: inputs (batch_size, context) and next-token targets (batch_size, context)."""
    if len(ids) <= context:
        raise ValueError("the token stream is shorter than one context window")
    starts = torch.randint(len(ids) - context, (batch_size,), generator=generator)
    window = starts[:, None] + torch.arange(context + 1)  # (b, context + 1)
    tokens = ids[window]
    return tokens[:, :-1], tokens[:, 1:]


def eval_windows(ids: torch.Tensor, count: int, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` evenly spaced, fixed windows (inputs, targets) for a deterministic evaluation set."""
    if len(ids) <= context:
        raise ValueError("the token stream is shorter than one context window")
    starts = torch.linspace(0, len(ids) - context - 1, count).long()
    tokens = ids[starts[:, None] + torch.arange(context + 1)]  # (count, context + 1)
    return tokens[:, :-1], tokens[:, 1:]
