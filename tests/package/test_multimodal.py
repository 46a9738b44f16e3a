"""Unit tests of vlmcourse.multimodal: the building blocks of the CoCa, Flamingo and LLaVA notebooks."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from vlmcourse.multimodal import (
    FEWSHOT_TASKS,
    TinyLM,
    TinyVisionEncoder,
    bleu,
    causal_mask,
    cell_targets,
    fewshot_answer,
    fewshot_episode,
    format_chat,
    greedy_generate,
    next_token_loss,
    train_causal_lm,
)
from vlmcourse.world import World, get_tokenizer


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models: one thread is faster, and much faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_causal_mask_blocks_the_future() -> None:
    mask = causal_mask(4)
    assert mask.shape == (4, 4)
    assert torch.isinf(mask[0, 1]) and mask[1, 0] == 0 and mask[2, 2] == 0


def test_tiny_lm_is_causal_and_embeds_match_ids() -> None:
    torch.manual_seed(0)
    lm = TinyLM(20, d_model=16, n_layers=2, n_heads=2, max_len=16).eval()
    ids = torch.randint(0, 20, (2, 7))
    logits = lm(ids)
    assert logits.shape == (2, 7, 20)
    torch.testing.assert_close(lm.forward_embeds(lm.embed(ids)), logits)
    changed = ids.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 20
    torch.testing.assert_close(lm(changed)[:, :5], logits[:, :5])  # the future never leaks back


def test_next_token_loss_ignores_padding() -> None:
    logits = torch.randn(1, 4, 6)
    ids = torch.tensor([[1, 2, 3, 0]])
    want = torch.nn.functional.cross_entropy(logits[0, :2], ids[0, 1:3])
    torch.testing.assert_close(next_token_loss(logits, ids, pad_id=0), want)


def test_train_causal_lm_learns_a_repeated_sequence() -> None:
    torch.manual_seed(0)
    ids = torch.tensor([[1, 5, 6, 7, 8, 2]] * 8)
    lm = TinyLM(10, d_model=16, n_layers=1, n_heads=2, max_len=8)
    history = train_causal_lm(lm, ids, pad_id=0, steps=30, batch_size=4, lr=1e-2, progress=False)
    assert history["loss"][-1] < 0.2 * history["loss"][0]


def test_greedy_generate_handles_prompts_of_different_lengths() -> None:
    # A "model" whose next token is always the previous token + 1, stopping at 9.
    def logits_fn(ids: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot((ids + 1).clamp(max=9), 10).float()

    out = greedy_generate(logits_fn, [[3], [1, 5, 7]], max_new_tokens=10, stop_ids=[9], pad_id=0)
    assert out == [[4, 5, 6, 7, 8, 9], [8, 9]]
    assert greedy_generate(logits_fn, [[1]], max_new_tokens=2, stop_ids=[9]) == [[2, 3]]


def test_vision_encoder_gives_one_token_per_cell() -> None:
    encoder = TinyVisionEncoder(d_model=16)
    assert encoder(torch.rand(2, 3, 48, 48)).shape == (2, 9, 16)
    scenes = World(seed=0, split="train", image_size=48).scenes(5)
    targets = cell_targets(scenes)
    for row, scene in enumerate(scenes):
        assert int((targets["colour"][row] > 0).sum()) == len(scene.objects)
        for o in scene.objects:
            assert int(targets["shape"][row, o.row * 3 + o.col]) == o.shape_id + 1


def test_format_chat_marks_only_responses() -> None:
    tok = get_tokenizer()
    turns = [{"from": "human", "value": "<image>\nwhat colour is the circle?"}, {"from": "gpt", "value": "red."}]
    ids, is_response = format_chat(turns, tok)
    assert ids[0] == tok.bos_id and tok.image_id in ids and ids[-1] == tok.eos_id
    assert [tok.vocab[i] for i, r in zip(ids, is_response) if r] == ["red", ".", "<eos>"]


def test_fewshot_episode_interleaves_images_and_answers() -> None:
    tok = get_tokenizer()
    scenes = World(seed=0, split="train", image_size=48, max_objects=1).scenes(2)
    for task in FEWSHOT_TASKS:
        ids, owner = fewshot_episode(scenes, task, tok)
        assert ids.count(tok.image_id) == 2 and len(owner) == len(ids)
        want = " ".join(f"<image> {fewshot_answer(s, task)}" for s in scenes).replace(" .", ".")
        assert tok.decode(ids) == want


def test_bleu() -> None:
    assert math.isclose(bleu(["a red circle and a blue square"], ["a red circle and a blue square"]), 1.0)
    assert bleu(["x y z w"], ["a b c d"]) == 0.0
    assert 0 < bleu(["a red circle and a green square"], ["a red circle and a blue square"]) < 1
