"""Unit tests for vlmcourse.corpus: the offline text corpus, the character tokenizer and LM batches."""

import pytest
import torch

from vlmcourse.corpus import UNKNOWN, CharVocab, eval_windows, lm_batch, python_docs_text, split_ids


def test_corpus_is_real_deterministic_english():
    text = python_docs_text()
    assert len(text) > 200_000
    assert text == python_docs_text()
    lowered = text.lower()
    for word in ("the", "statement", "function", "return"):
        assert f" {word} " in lowered


def test_char_vocab_round_trip_and_unknown():
    vocab = CharVocab("aab\nc", min_count=2)
    assert vocab.itos == [UNKNOWN, "a"]
    assert vocab.encode("abz").tolist() == [1, 0, 0]
    full = CharVocab("hello world")
    assert full.decode(full.encode("hello")) == "hello"
    assert full.encode("x").tolist() == [0]


def test_split_ids():
    ids = torch.arange(100)
    train, val = split_ids(ids, 0.1)
    assert len(train) == 90 and len(val) == 10 and int(val[0]) == 90
    with pytest.raises(ValueError):
        split_ids(ids, 0.0)


def test_lm_batch_targets_are_shifted_inputs():
    ids = torch.arange(1000)
    x, y = lm_batch(ids, 8, 16, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16)
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(y[:, -1], x[:, -1] + 1)
    x2, _ = lm_batch(ids, 8, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)
    with pytest.raises(ValueError):
        lm_batch(torch.arange(5), 2, 5)


def test_eval_windows_fixed_and_in_range():
    ids = torch.arange(500)
    x, y = eval_windows(ids, 10, 32)
    assert x.shape == (10, 32) and int(x[0, 0]) == 0 and int(y[-1, -1]) == 499
    assert torch.equal(y[:, :-1], x[:, 1:])
