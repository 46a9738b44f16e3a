"""Tests of the generated image-text world (vlmcourse.world)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from vlmcourse import world as W


def test_deterministic_by_seed_split_and_index() -> None:
    a, b = W.World(seed=3, split="train"), W.World(seed=3, split="train")
    assert a[17] == b[17], "the same (seed, split, index) must give the same scene"
    assert np.array_equal(a[17].image(), b[17].image()), "rendering must be deterministic"
    assert W.captions(a[17]) == W.captions(b[17])
    assert W.instruction(a[17], "reasoning") == W.instruction(b[17], "reasoning")
    assert [a[i] for i in range(20)] != [W.World(seed=4)[i] for i in range(20)], "another seed, other scenes"
    assert [a[i] for i in range(20)] != [W.World(seed=3, split="test")[i] for i in range(20)]
    assert a.scenes(5, start=10) == [a[i] for i in range(10, 15)], "scenes(n, start) == indexing"


@pytest.mark.parametrize("split", W.SPLITS)
def test_splits_respect_heldout_pairs(split: str) -> None:
    scenes = W.World(seed=0, split=split).scenes(400)
    pairs = [(o.colour, o.shape) for s in scenes for o in s.objects]
    heldout = set(W.HELDOUT_PAIRS)
    if split in ("train", "test"):
        assert not heldout & set(pairs), "train/test scenes must never contain a held-out pair"
    if split == "heldout":
        assert all(any((o.colour, o.shape) in heldout for o in s.objects) for s in scenes)
    counts = [len(s.objects) for s in scenes]
    assert min(counts) == 1 and max(counts) == 3


def test_heldout_pairs_cover_every_colour_and_shape_once() -> None:
    assert sorted(c for c, _ in W.HELDOUT_PAIRS) == sorted(set(c for c, _ in W.HELDOUT_PAIRS))
    assert sorted(s for _, s in W.HELDOUT_PAIRS) == sorted(W.SHAPES)
    assert len(W.SEEN_PAIRS) + len(W.HELDOUT_PAIRS) == len(W.PAIRS)
    assert all(W.pair_name(W.pair_id(c, s)) == f"{c} {s}" for c, s in W.PAIRS)


@pytest.mark.parametrize("size", [32, 48])
def test_images_boxes_and_labels_agree(size: int) -> None:
    for scene in W.World(seed=1, split="all", image_size=size).scenes(100):
        image = scene.image()
        assert image.shape == (size, size, 3) and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        boxes, norm = scene.boxes(), scene.boxes(normalized=True)
        assert boxes.shape == (len(scene.objects), 4)
        np.testing.assert_allclose(norm * size, boxes, atol=1e-4)
        for o, (x0, y0, x1, y1) in zip(scene.objects, boxes.astype(int)):
            inside = image[y0:y1, x0:x1]
            holds = np.isclose(inside.reshape(-1, 3), W.COLOUR_RGB[o.colour], atol=1e-6).all(axis=-1)
            assert holds.any(), "the box must hold pixels of the colour"
            assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
        # objects sit in distinct grid cells, so their boxes never overlap
        cells = [(o.row, o.col) for o in scene.objects]
        assert len(set(cells)) == len(cells)
        assert list(scene.labels("shape")) == [W.SHAPES.index(o.shape) for o in scene.objects]
        assert list(scene.labels("pair")) == [W.pair_id(o.colour, o.shape) for o in scene.objects]
        # pixels outside every box are background
        outside = np.ones((size, size), bool)
        for x0, y0, x1, y1 in boxes.astype(int):
            outside[y0:y1, x0:x1] = False
        assert float(image[outside].max(initial=0.0)) == 0.0, "a drawn pixel lies outside every box"


def test_tokenizer_covers_every_generated_text() -> None:
    tok = W.get_tokenizer()
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.image_id) == (0, 1, 2, 3)
    assert tok.vocab[:4] == ["<pad>", "<bos>", "<eos>", "<image>"]
    texts = [t.format(colour=c, shape=s) for t in W.PROMPT_TEMPLATES for c, s in W.PAIRS] + list(W.DETAIL_PROMPTS)
    for split in ("train", "heldout"):
        for scene in W.World(seed=2, split=split, image_size=48).scenes(120):
            texts += W.captions(scene) + [W.detailed_description(scene)]
            texts += [q.question for q in W.questions(scene)] + [q.sentence for q in W.questions(scene)]
            for kind in W.INSTRUCTION_KINDS:
                texts += [turn["value"] for turn in W.instruction(scene, kind)]
    for text in texts:
        ids = tok.encode(text)
        assert tok.unk_id not in ids, f"unknown word in {text!r}: {tok.tokenize(text)}"
        assert tok.decode(ids) == text, f"decode(encode(x)) != x for {text!r}: {tok.decode(ids)!r}"
    assert tok.encode("<image>\nhi")[:2] == [tok.image_id, tok.stoi["\n"]]


def test_encode_batch_pads_and_truncates() -> None:
    tok = W.get_tokenizer()
    batch = tok.encode_batch(["a red circle.", "a photo of a large blue square."])
    assert batch.dtype == torch.long and batch.shape == (2, 10)
    assert batch[0, 0] == tok.bos_id and batch[0, 5] == tok.eos_id and (batch[0, 6:] == tok.pad_id).all()
    short = tok.encode_batch(["a photo of a large blue square."], max_len=5)
    assert short.shape == (1, 5) and short[0, -1] == tok.eos_id


def test_questions_are_answered_by_the_scene() -> None:
    for scene in W.World(seed=5, split="all").scenes(200):
        qas = W.questions(scene)
        assert {q.kind for q in qas} >= {"count", "exists"}
        for qa in qas:
            assert qa.answer in W.ANSWERS and W.ANSWERS[qa.answer_id] == qa.answer
            if qa.question == "how many objects are there?":
                assert qa.answer == W.NUMBERS[len(scene.objects)]
            if qa.kind == "colour":
                shape = qa.question.split()[-1].rstrip("?")
                assert [o.colour for o in scene.objects if o.shape == shape] == [qa.answer]
            if qa.kind == "exists":
                colour, shape = qa.question.rstrip("?").split()[-2:]
                assert (scene.count(colour, shape) > 0) == (qa.answer == "yes")


def test_instructions_have_llava_format() -> None:
    for scene in W.World(seed=6).scenes(50):
        for kind in W.INSTRUCTION_KINDS:
            turns = W.instruction(scene, kind)
            assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
            assert turns[0]["value"].startswith("<image>\n")
            assert sum(t["value"].count("<image>") for t in turns) == 1
    detailed = W.detailed_description(W.World(seed=6)[0])
    assert all(o.name in detailed for o in W.World(seed=6)[0].objects)


def test_batches_have_tensors_of_the_right_shape() -> None:
    world = W.World(seed=0, split="train", image_size=32)
    cap = world.caption_batch(8)
    assert cap["images"].shape == (8, 3, 32, 32) and cap["images"].dtype == torch.float32
    assert cap["tokens"].shape[0] == 8 and len(cap["captions"]) == 8
    assert W.get_tokenizer().decode(cap["tokens"][0]) == cap["captions"][0]
    det = world.detection_batch(8, label="pair")
    assert all(b.shape == (len(lab), 4) for b, lab in zip(det["boxes"], det["labels"]))
    vqa = world.vqa_batch(8, kinds=("colour", "shape"))
    assert vqa["answer_ids"].shape == (8,) and vqa["question_tokens"].shape[0] == 8
    ins = world.instruction_batch(6, kinds=("detailed",))
    assert ins["kinds"] == ["detailed"] * 6
    single = W.single_object_scenes(W.HELDOUT_PAIRS, per_pair=3)
    assert len(single) == 12 and all(len(s.objects) == 1 for s in single)
    assert W.images_tensor(single).shape == (12, 3, 32, 32)


def test_fast_enough() -> None:
    world = W.World(seed=0)
    start = time.perf_counter()
    world.caption_batch(1000)
    rate = 1000 / (time.perf_counter() - start)
    assert rate > 500, f"only {rate:.0f} captioned samples/s"
