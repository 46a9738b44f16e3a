"""Unit tests for vlmcourse.sequences: synthetic seq2seq tasks and the character tokenizer."""

import pytest
import torch

from vlmcourse.sequences import (
    BOS,
    EOS,
    PAD,
    CharTokenizer,
    encode_pairs,
    exact_match,
    make_pairs,
    pad_rows,
    tokenizer_for,
    train_test_pairs,
)


def test_tokenizer_round_trip_and_specials():
    tok = CharTokenizer("abc")
    assert tok.vocab_size == 6
    ids = tok.encode("cab", bos=True, eos=True)
    assert ids == [BOS, 5, 3, 4, EOS]
    assert tok.decode(ids + [PAD, 3]) == "cab"  # stops at EOS
    assert tok.decode([PAD, 3, PAD]) == "a"
    with pytest.raises(ValueError):
        tok.encode("abz")
    with pytest.raises(ValueError):
        CharTokenizer("aa")


@pytest.mark.parametrize("task", ["reverse", "sort", "dates"])
def test_tasks_are_deterministic_distinct_and_correct(task):
    pairs = make_pairs(task, 200, seed=3)
    assert pairs == make_pairs(task, 200, seed=3)
    assert pairs != make_pairs(task, 200, seed=4)
    assert len({s for s, _ in pairs}) == 200
    tok = tokenizer_for(task)
    for source, target in pairs:
        tok.encode(source), tok.encode(target)  # alphabet covers the task
        if task == "reverse":
            assert target == source[::-1]
        elif task == "sort":
            assert target == "".join(sorted(source))
        else:
            day, month, year = source.split()
            assert target.startswith(year) and target.endswith(f"{int(day):02d}")


def test_lengths_respected():
    pairs = make_pairs("reverse", 300, min_len=3, max_len=5, seed=0)
    assert {len(s) for s, _ in pairs} == {3, 4, 5}


def test_train_and_test_are_disjoint():
    train, test = train_test_pairs("reverse", 2000, 300, min_len=3, max_len=6, seed=1)
    assert len(train) == 2000 and len(test) == 300
    assert not {s for s, _ in train} & {s for s, _ in test}


def test_too_many_distinct_pairs_raises():
    with pytest.raises(ValueError):
        make_pairs("reverse", 10_000, min_len=1, max_len=1)


def test_encode_pairs_padding():
    tok = tokenizer_for("reverse")
    src, tgt = encode_pairs([("ab", "ba"), ("abcd", "dcba")], tok)
    assert src.shape == (2, 4) and tgt.shape == (2, 6)
    assert src[0].tolist() == tok.encode("ab") + [PAD, PAD]
    assert tgt[0].tolist() == [BOS] + tok.encode("ba") + [EOS, PAD, PAD]
    assert tok.decode(tgt[1, 1:]) == "dcba"


def test_pad_rows_and_exact_match():
    assert pad_rows([[5], [6, 7]], max_len=3).tolist() == [[5, PAD, PAD], [6, 7, PAD]]
    assert pad_rows([[5], [6, 7]]).dtype == torch.long
    assert pad_rows([[1, 2], [3]], pad=9).tolist() == [[1, 2], [3, 9]]
    assert pad_rows([(1, 2, 3), [4]], 0, 2).tolist() == [[1, 2], [4, 0]]  # longer rows are cut
    assert pad_rows([]).shape == (0, 0)
    assert exact_match(["ab", "c"], ["ab", "d"]) == 0.5
