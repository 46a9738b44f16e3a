"""A generated image-text world: small RGB scenes and everything multimodal models learn from them.

No downloads: every sample is rendered on the fly from a symbolic scene (1-3 coloured shapes on a
black background, placed in the cells of a 3x3 grid). Everything is derived from the symbolic
description, deterministically by ``(seed, split, index)``, at thousands of samples per second.

Vocabulary of the world
-----------------------
``COLOURS``   red, green, blue, yellow, purple, cyan     (``COLOUR_RGB`` gives the RGB in [0, 1])
``SHAPES``    circle, square, triangle, cross
``SIZES``     small, large
``POSITIONS`` the 3x3 grid cells in reading order: "top left", "top", "top right", "left",
              "center", "right", "bottom left", "bottom", "bottom right" (``row*3 + col``)
``PAIRS``     all (colour, shape) pairs, class id ``pair_id = colour_index * len(SHAPES) + shape_index``
``HELDOUT_PAIRS`` four (colour, shape) pairs that never appear in the "train" and "test" splits
              (one per shape, one per colour): honest zero-shot / compositional evaluation.

Splits (``World(split=...)``)
-----------------------------
``"train"``    objects use only the seen pairs (``SEEN_PAIRS``).
``"test"``     same distribution as "train", drawn from an independent random stream.
``"heldout"``  every scene contains at least one object of a held-out pair (the others are any pair).
``"all"``      any pair.

Symbolic scene
--------------
``Obj``: ``shape``, ``colour``, ``size``, ``row``, ``col``, ``cx``, ``cy``, ``radius`` (pixels),
``box`` (pixel xyxy, tight around the drawn pixels, x1/y1 exclusive), plus properties
``position`` ("top left"...), ``shape_id``, ``colour_id``, ``pair_id``, ``box_norm`` (xyxy / image size).
``Scene``: ``objects`` (tuple of ``Obj`` in reading order), ``image_size``, ``index``, ``split``;
``scene.image()`` -> float32 numpy (H, W, 3) in [0, 1]; ``scene.boxes()`` -> (k, 4) pixel xyxy;
``scene.boxes(normalized=True)`` -> xyxy in [0, 1]; ``scene.labels(kind)`` with kind "shape" |
"colour" | "pair"; ``scene.to_dict()`` (JSON-able symbolic description).

Text derived from a scene (all lower case, word-level, punctuation as separate tokens)
----------------------------------------------------------------------------------------
``caption(scene, style)``  styles ``CAPTION_STYLES``: "short" ("red circle and blue square"),
    "simple" ("a small red circle and a large blue square."), "position" ("... at the top left ..."),
    "count" ("two objects: a red circle and a blue square."), "photo" ("a photo of a red circle ...").
    ``captions(scene)`` returns all styles. Objects are listed in reading order (deterministic).
``questions(scene)``  list of ``QA(question, answer, kind, sentence)``; kind in ``QUESTION_KINDS``
    ("colour", "shape", "count", "position", "size", "exists"); ``answer`` is a single word or a
    position phrase from a closed set (``ANSWERS``), ``sentence`` is a full-sentence answer.
``instruction(scene, kind, rng)``  LLaVA-style conversation, a list of turns
    ``{"from": "human" | "gpt", "value": str}`` whose first human turn starts with "<image>\\n";
    kind in ``INSTRUCTION_KINDS``: "conversation" (multi-turn QA), "detailed" (detailed description),
    "reasoning" (complex reasoning over several objects). Generated with templates from the
    symbolic representation (captions + boxes), the way LLaVA prompted a text-only model.
``PROMPT_TEMPLATES`` zero-shot prompt templates with ``{colour}`` and ``{shape}`` placeholders.

Tokenizer
---------
``Tokenizer()`` (or ``get_tokenizer()``): a word-level tokenizer for the whole vocabulary.
Special tokens ``<pad>`` (id 0), ``<bos>`` (1), ``<eos>`` (2), ``<image>`` (3), ``<unk>`` (4),
``<sep>`` (5); attributes ``pad_id``, ``bos_id``, ``eos_id``, ``image_id``, ``unk_id``, ``sep_id``,
``vocab`` (list), ``stoi`` (dict), ``len(tok)``.
``tok.tokenize(text)`` -> words; ``tok.encode(text, bos=False, eos=False)`` -> list[int];
``tok.decode(ids, skip_special=True)`` -> str;
``tok.encode_batch(texts, bos=True, eos=True, max_len=None)`` -> LongTensor (B, L) right-padded
with ``pad_id`` (truncated to ``max_len`` if given, keeping the final ``<eos>``).
"<image>" written in a text becomes the single ``image_id`` token.

Datasets and batch helpers
--------------------------
``world = World(seed=0, split="train", image_size=32, min_objects=1, max_objects=3)``
``world[i]`` / ``world.scene(i)`` -> Scene (the same for the same seed, split and index);
``world.scenes(n, start=0)`` -> list of scenes.
``world.images(n, start=0)`` -> float32 tensor (n, 3, H, W) in [0, 1].
``world.caption_batch(n, start=0, style=None, tokenizer=None, max_len=None)`` -> dict with
    "images" (n, 3, H, W), "captions" list[str], "tokens" LongTensor (n, L) (bos ... eos, padded),
    "scenes"; ``style=None`` picks a style per sample (deterministic).
``world.detection_batch(n, start=0, label="shape")`` -> dict with "images", "boxes" (list of (k, 4)
    float tensors, normalised xyxy), "boxes_px" (pixel xyxy), "labels" (list of (k,) long tensors),
    "scenes".
``world.vqa_batch(n, start=0, tokenizer=None, kinds=None)`` -> dict with "images", "questions",
    "answers", "kinds", "question_tokens" (n, L), "answer_ids" (n,) (index into ``ANSWERS``), "scenes";
    one question per scene, picked deterministically.
``world.instruction_batch(n, start=0, kinds=None)`` -> dict with "images", "conversations"
    (list of turn lists), "kinds", "scenes".
``images_tensor(scenes)`` -> (n, 3, H, W) for any list of scenes; ``render(scene)`` -> (H, W, 3).
``single_object_scenes(pairs, image_size=32, seed=0, per_pair=1)`` -> one-object scenes of the given
    (colour, shape) pairs with random size and position (for zero-shot classification).
``pair_name(pair_id)`` -> "red circle".

The API above is stable: other modules (CLIP, SigLIP, CoCa, Flamingo, LLaVA, DETR) build on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

# ----------------------------------------------------------------------------- vocabulary of scenes
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "cyan")
COLOUR_RGB: dict[str, tuple[float, float, float]] = {
    "red": (0.92, 0.12, 0.12),
    "green": (0.12, 0.78, 0.18),
    "blue": (0.18, 0.32, 1.00),
    "yellow": (0.95, 0.88, 0.10),
    "purple": (0.62, 0.22, 0.88),
    "cyan": (0.10, 0.86, 0.90),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
PLURALS: dict[str, str] = {s: s + ("es" if s.endswith("s") else "s") for s in SHAPES}
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("top left", "top", "top right", "left", "center", "right",
                              "bottom left", "bottom", "bottom right")
# Phrase used after a noun: "a red circle at the top left".
POSITION_PHRASES: tuple[str, ...] = ("at the top left", "at the top", "at the top right", "on the left",
                                     "in the center", "on the right", "at the bottom left", "at the bottom",
                                     "at the bottom right")
NUMBERS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

PAIRS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)
HELDOUT_PAIRS: tuple[tuple[str, str], ...] = (("red", "square"), ("green", "triangle"),
                                              ("blue", "cross"), ("yellow", "circle"))
SEEN_PAIRS: tuple[tuple[str, str], ...] = tuple(p for p in PAIRS if p not in HELDOUT_PAIRS)
SPLITS: tuple[str, ...] = ("train", "test", "heldout", "all")
_SPLIT_STREAM = {"train": 0, "test": 1, "heldout": 2, "all": 3}
GRID = 3


def pair_id(colour: str, shape: str) -> int:
    """Class id of a (colour, shape) pair: ``colour_index * len(SHAPES) + shape_index``."""
    return COLOURS.index(colour) * len(SHAPES) + SHAPES.index(shape)


def pair_name(index: int) -> str:
    """``pair_name(0) == "red circle"``."""
    colour, shape = PAIRS[index]
    return f"{colour} {shape}"


# ----------------------------------------------------------------------------- symbolic scenes
@dataclass(frozen=True)
class Obj:
    """One shape in a scene. ``box`` is pixel xyxy, tight around the drawn pixels (x1, y1 exclusive)."""

    shape: str
    colour: str
    size: str
    row: int
    col: int
    cx: float
    cy: float
    radius: float
    box: tuple[float, float, float, float]
    image_size: int

    @property
    def position(self) -> str:
        return POSITIONS[self.row * GRID + self.col]

    @property
    def position_phrase(self) -> str:
        return POSITION_PHRASES[self.row * GRID + self.col]

    @property
    def shape_id(self) -> int:
        return SHAPES.index(self.shape)

    @property
    def colour_id(self) -> int:
        return COLOURS.index(self.colour)

    @property
    def pair_id(self) -> int:
        return pair_id(self.colour, self.shape)

    @property
    def name(self) -> str:
        """"red circle"."""
        return f"{self.colour} {self.shape}"

    @property
    def box_norm(self) -> tuple[float, float, float, float]:
        s = float(self.image_size)
        return (self.box[0] / s, self.box[1] / s, self.box[2] / s, self.box[3] / s)


@dataclass(frozen=True)
class Scene:
    """A symbolic scene; objects are sorted in reading order (row, then column)."""

    objects: tuple[Obj, ...]
    image_size: int
    index: int = 0
    split: str = "all"
    seed: int = 0
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def image(self) -> np.ndarray:
        """The rendered scene, float32 (H, W, 3) in [0, 1] (cached)."""
        if "image" not in self._cache:
            self._cache["image"] = render(self)
        return self._cache["image"]

    def boxes(self, normalized: bool = False) -> np.ndarray:
        """(k, 4) float32 xyxy boxes, in pixels or divided by the image size."""
        rows = [o.box_norm if normalized else o.box for o in self.objects]
        return np.asarray(rows, dtype=np.float32).reshape(-1, 4)

    def labels(self, kind: str = "shape") -> np.ndarray:
        """(k,) int64 labels: kind "shape" (index in SHAPES), "colour" or "pair" (index in PAIRS)."""
        attr = {"shape": "shape_id", "colour": "colour_id", "pair": "pair_id"}[kind]
        return np.asarray([getattr(o, attr) for o in self.objects], dtype=np.int64)

    def count(self, colour: str | None = None, shape: str | None = None) -> int:
        return sum(1 for o in self.objects if (colour is None or o.colour == colour)
                   and (shape is None or o.shape == shape))

    def rng(self, purpose: int) -> np.random.Generator:
        """A random stream for text choices about this scene, independent of how it was sampled."""
        return np.random.default_rng([self.seed, _SPLIT_STREAM.get(self.split, 3), self.index, 1000 + purpose])

    def to_dict(self) -> dict:
        return {
            "image_size": self.image_size,
            "objects": [
                {"shape": o.shape, "colour": o.colour, "size": o.size, "position": o.position,
                 "box": [round(v, 2) for v in o.box]}
                for o in self.objects
            ],
        }


_COORDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    if size not in _COORDS:
        centres = np.arange(size, dtype=np.float32) + 0.5
        _COORDS[size] = (centres[None, :], centres[:, None])  # x (1, W), y (H, 1)
    return _COORDS[size]


def _shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """Boolean (H, W) mask of one shape centred at (cx, cy) with half-extent r (pixels)."""
    x, y = _coords(size)
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if shape == "triangle":  # pointing up: apex at the top, base at the bottom
        t = (dy + r) / (2 * r)  # 0 at the apex, 1 at the base
        return (t >= 0) & (t <= 1) & (np.abs(dx) <= r * t)
    if shape == "cross":
        arm = max(r * 0.36, 0.75)
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    raise ValueError(f"unknown shape {shape!r}")


def _tight_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def _make_obj(shape: str, colour: str, size_name: str, row: int, col: int, image_size: int,
              rng: np.random.Generator) -> Obj:
    cell = image_size / GRID
    radius = cell * (0.30 if size_name == "small" else 0.46)
    slack = max(cell / 2 - radius - 0.3, 0.0)
    cx = (col + 0.5) * cell + float(rng.uniform(-slack, slack))
    cy = (row + 0.5) * cell + float(rng.uniform(-slack, slack))
    box = _tight_box(_shape_mask(shape, cx, cy, radius, image_size))
    return Obj(shape, colour, size_name, row, col, cx, cy, radius, box, image_size)


def sample_scene(rng: np.random.Generator, split: str = "train", image_size: int = 32,
                 min_objects: int = 1, max_objects: int = 3, index: int = 0, seed: int = 0) -> Scene:
    """Sample a symbolic scene of the split from ``rng``."""
    if split not in _SPLIT_STREAM:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    count = int(rng.integers(min_objects, max_objects + 1))
    cells = rng.choice(GRID * GRID, size=count, replace=False)
    allowed = SEEN_PAIRS if split in ("train", "test") else PAIRS
    objects = []
    for k, cell in enumerate(cells):
        pool = HELDOUT_PAIRS if (split == "heldout" and k == 0) else allowed
        colour, shape = pool[int(rng.integers(len(pool)))]
        size_name = SIZES[int(rng.integers(len(SIZES)))]
        objects.append(_make_obj(shape, colour, size_name, int(cell) // GRID, int(cell) % GRID, image_size, rng))
    objects.sort(key=lambda o: (o.row, o.col))
    return Scene(tuple(objects), image_size, index, split, seed)


def render(scene: Scene) -> np.ndarray:
    """Draw the scene: float32 (H, W, 3) in [0, 1], black background."""
    size = scene.image_size
    image = np.zeros((size, size, 3), dtype=np.float32)
    for o in scene.objects:
        mask = _shape_mask(o.shape, o.cx, o.cy, o.radius, size)
        image[mask] = COLOUR_RGB[o.colour]
    return image


def images_tensor(scenes: Sequence[Scene]) -> torch.Tensor:
    """(n, 3, H, W) float32 tensor of the rendered scenes."""
    stacked = np.stack([s.image() for s in scenes])  # (n, H, W, 3)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


def single_object_scenes(pairs: Iterable[tuple[str, str]], image_size: int = 32, seed: int = 0,
                         per_pair: int = 1) -> list[Scene]:
    """``per_pair`` one-object scenes for each (colour, shape) pair, random size and cell."""
    rng = np.random.default_rng([seed, 77])
    scenes = []
    for colour, shape in pairs:
        for _ in range(per_pair):
            cell = int(rng.integers(GRID * GRID))
            size_name = SIZES[int(rng.integers(len(SIZES)))]
            obj = _make_obj(shape, colour, size_name, cell // GRID, cell % GRID, image_size, rng)
            scenes.append(Scene((obj,), image_size, len(scenes), "all", seed))
    return scenes


# ----------------------------------------------------------------------------- captions
CAPTION_STYLES: tuple[str, ...] = ("short", "simple", "position", "count", "photo")
PROMPT_TEMPLATES: tuple[str, ...] = ("a photo of a {colour} {shape}.", "a {colour} {shape}.",
                                     "a picture of a {colour} {shape}.", "an image of a {colour} {shape}.",
                                     "a drawing of a {colour} {shape}.", "there is a {colour} {shape}.")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _join(parts: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _np(o: Obj, size: bool = True) -> str:
    """Noun phrase: "a small red circle"."""
    words = f"{o.size} {o.colour} {o.shape}" if size else f"{o.colour} {o.shape}"
    return f"{_article(words)} {words}"


def caption(scene: Scene, style: str = "simple") -> str:
    """One caption of the scene in the given style (see ``CAPTION_STYLES``)."""
    objs = scene.objects
    if style == "short":
        return _join([o.name for o in objs])
    if style == "simple":
        return _join([_np(o) for o in objs]) + "."
    if style == "position":
        return _join([f"{_np(o)} {o.position_phrase}" for o in objs]) + "."
    if style == "count":
        noun = "object" if len(objs) == 1 else "objects"
        return f"{NUMBERS[len(objs)]} {noun}: " + _join([_np(o, size=False) for o in objs]) + "."
    if style == "photo":
        return "a photo of " + _join([_np(o, size=False) for o in objs]) + "."
    raise ValueError(f"style must be one of {CAPTION_STYLES}, got {style!r}")


def captions(scene: Scene) -> list[str]:
    """All caption styles of the scene, in the order of ``CAPTION_STYLES``."""
    return [caption(scene, s) for s in CAPTION_STYLES]


# ----------------------------------------------------------------------------- questions
QUESTION_KINDS: tuple[str, ...] = ("colour", "shape", "count", "position", "size", "exists")
ANSWERS: tuple[str, ...] = COLOURS + SHAPES + NUMBERS[:5] + POSITIONS + SIZES + ("yes", "no")


@dataclass(frozen=True)
class QA:
    """A question about a scene with a closed-set ``answer`` and a full-sentence answer."""

    question: str
    answer: str
    kind: str
    sentence: str

    @property
    def answer_id(self) -> int:
        return ANSWERS.index(self.answer)


def _unique(scene: Scene, colour: str | None = None, shape: str | None = None) -> bool:
    return scene.count(colour, shape) == 1


def questions(scene: Scene) -> list[QA]:
    """Every unambiguous question of the templates about the scene (deterministic order)."""
    out: list[QA] = []
    n = len(scene.objects)
    are = "is" if n == 1 else "are"
    noun = "object" if n == 1 else "objects"
    out.append(QA("how many objects are there?", NUMBERS[n], "count", f"there {are} {NUMBERS[n]} {noun}."))
    for o in scene.objects:
        if _unique(scene, shape=o.shape):
            out.append(QA(f"what colour is the {o.shape}?", o.colour, "colour", f"the {o.shape} is {o.colour}."))
        if _unique(scene, colour=o.colour):
            out.append(QA(f"what shape is the {o.colour} object?", o.shape, "shape",
                          f"the {o.colour} object is {_article(o.shape)} {o.shape}."))
        if _unique(scene, o.colour, o.shape):
            out.append(QA(f"where is the {o.name}?", o.position, "position", f"the {o.name} is {o.position_phrase}."))
            out.append(QA(f"is the {o.name} small or large?", o.size, "size", f"the {o.name} is {o.size}."))
    for shape in SHAPES:
        k = scene.count(shape=shape)
        noun_s = shape if k == 1 else PLURALS[shape]
        out.append(QA(f"how many {PLURALS[shape]} are there?", NUMBERS[k], "count",
                      f"there {'is' if k == 1 else 'are'} {NUMBERS[k]} {noun_s}."))
    present = {(o.colour, o.shape) for o in scene.objects}
    for colour, shape in sorted(present):
        out.append(QA(f"is there {_article(colour)} {colour} {shape}?", "yes", "exists",
                      f"yes, there is {_article(colour)} {colour} {shape}."))
    absent = [p for p in PAIRS if p not in present]
    rng = scene.rng(1)
    for i in rng.choice(len(absent), size=min(len(present), len(absent)), replace=False):
        colour, shape = absent[int(i)]
        out.append(QA(f"is there {_article(colour)} {colour} {shape}?", "no", "exists",
                      f"no, there is no {colour} {shape}."))
    return out


# ----------------------------------------------------------------------------- instruction data (LLaVA)
INSTRUCTION_KINDS: tuple[str, ...] = ("conversation", "detailed", "reasoning")
DETAIL_PROMPTS: tuple[str, ...] = ("describe the image in detail.", "what do you see in this image?",
                                   "give a detailed description of the picture.",
                                   "explain what is shown in the image.")


def _relation(a: Obj, b: Obj) -> str:
    """Where ``a`` is relative to ``b``: "above and to the left of", "to the right of", ..."""
    vertical = "above" if a.row < b.row else "below" if a.row > b.row else ""
    horizontal = "to the left of" if a.col < b.col else "to the right of" if a.col > b.col else ""
    if vertical and horizontal:
        return f"{vertical} and {horizontal}"
    return vertical or horizontal


def detailed_description(scene: Scene) -> str:
    """A paragraph describing every object, its size, place and box, and the relations between them."""
    n = len(scene.objects)
    noun = "object" if n == 1 else "objects"
    sentences = [f"the image shows {NUMBERS[n]} {noun} on a black background."]
    for o in scene.objects:
        x0, y0, x1, y1 = (int(v) for v in o.box)
        sentences.append(f"there is {_np(o)} {o.position_phrase}, with the box {x0} {y0} {x1} {y1}.")
    for a, b in zip(scene.objects, scene.objects[1:]):
        sentences.append(f"the {a.name} is {_relation(a, b)} the {b.name}.")
    return " ".join(sentences)


def _reasoning(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """One complex-reasoning (question, answer with its justification)."""
    objs = scene.objects
    options = ["removal", "same_colour"]
    if len(objs) >= 2:
        options += ["relation", "largest"]
    choice = options[int(rng.integers(len(options)))]
    if choice == "removal":
        o = objs[int(rng.integers(len(objs)))]
        left = len(objs) - 1
        return (f"if the {o.name} were removed, how many objects would be left?",
                f"{NUMBERS[left]}. the image has {NUMBERS[len(objs)]} "
                f"{'object' if len(objs) == 1 else 'objects'}, and removing the {o.name} leaves {NUMBERS[left]}.")
    if choice == "same_colour":
        colours = sorted({o.colour for o in objs})
        if len(colours) == 1:
            return ("do all the objects have the same colour?",
                    f"yes. every object in the image is {colours[0]}.")
        return ("do all the objects have the same colour?",
                f"no. the objects are {_join(colours)}.")
    a, b = (objs[int(i)] for i in rng.choice(len(objs), size=2, replace=False))
    if choice == "relation":
        return (f"where is the {a.name} relative to the {b.name}?",
                f"the {a.name} is {_relation(a, b)} the {b.name}, because the {a.name} is "
                f"{a.position_phrase} and the {b.name} is {b.position_phrase}.")
    large = [o for o in objs if o.size == "large"]
    if len(large) == 1:
        return ("which object is the largest?", f"the {large[0].name}. it is large and the others are small.")
    if not large:
        return ("which object is the largest?", "none of them. all the objects are small.")
    return ("which object is the largest?",
            f"there is no single largest object: the {_join([o.name for o in large])} are all large.")


def instruction(scene: Scene, kind: str = "conversation", rng: np.random.Generator | None = None) -> list[dict]:
    """A LLaVA-style conversation about the scene: ``[{"from": "human"|"gpt", "value": str}, ...]``.

    The first human turn starts with ``"<image>\\n"``, as in LLaVA's instruction data.
    """
    rng = rng if rng is not None else scene.rng(2 + INSTRUCTION_KINDS.index(kind))
    if kind == "conversation":
        qas = questions(scene)
        picks = rng.choice(len(qas), size=min(len(qas), int(rng.integers(2, 4))), replace=False)
        turns = []
        for j, i in enumerate(picks):
            qa = qas[int(i)]
            turns.append({"from": "human", "value": ("<image>\n" if j == 0 else "") + qa.question})
            turns.append({"from": "gpt", "value": qa.sentence})
        return turns
    if kind == "detailed":
        prompt = DETAIL_PROMPTS[int(rng.integers(len(DETAIL_PROMPTS)))]
        return [{"from": "human", "value": "<image>\n" + prompt},
                {"from": "gpt", "value": detailed_description(scene)}]
    if kind == "reasoning":
        question, answer = _reasoning(scene, rng)
        return [{"from": "human", "value": "<image>\n" + question}, {"from": "gpt", "value": answer}]
    raise ValueError(f"kind must be one of {INSTRUCTION_KINDS}, got {kind!r}")


# ----------------------------------------------------------------------------- tokenizer
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<image>", "<unk>", "<sep>")
_TOKEN_RE = re.compile(r"<[a-z]+>|[a-z]+|\d+|[^\sa-z\d]")
# Words that appear in the fixed parts of the templates above (checked by the tests).
_TEMPLATE_WORDS = """
a an the of and there is are has object objects photo picture image drawing on in at to top bottom left right
center above below black background shows box from what colour shape how many where small or large yes no
if were removed would be left removing leaves do all have same every none them others it single largest
relative because describe detail detailed give description explain shown you see this user assistant
answer with word question which one single
"""
_DIGITS = [str(d) for d in range(129)]  # pixel coordinates in detailed descriptions


def _base_vocab() -> list[str]:
    words = set(_TEMPLATE_WORDS.split()) | set(COLOURS) | set(SHAPES) | set(PLURALS.values())
    words |= set(SIZES) | set(NUMBERS) | set(_DIGITS)
    for phrase in POSITIONS + POSITION_PHRASES:
        words |= set(phrase.split())
    punctuation = [".", ",", "?", ":", "!", "\n"]
    numbers = [w for w in words if w.isdigit()]
    return list(SPECIAL_TOKENS) + punctuation + sorted(w for w in words if not w.isdigit()) + sorted(numbers, key=int)


class Tokenizer:
    """Word-level tokenizer of the world's vocabulary (lower case; punctuation and newline are tokens)."""

    def __init__(self) -> None:
        self.vocab: list[str] = _base_vocab()
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.vocab)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2
        self.image_id, self.unk_id, self.sep_id = 3, 4, 5

    def __len__(self) -> int:
        return len(self.vocab)

    def tokenize(self, text: str) -> list[str]:
        """"<image>\\nwhat colour is it?" -> ["<image>", "\\n", "what", "colour", "is", "it", "?"]."""
        tokens = []
        for line_index, line in enumerate(text.lower().split("\n")):
            if line_index:
                tokens.append("\n")
            tokens.extend(_TOKEN_RE.findall(line))
        return tokens

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = [self.stoi.get(t, self.unk_id) for t in self.tokenize(text)]
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special: bool = True) -> str:
        """Join the words; stops at ``<eos>`` when ``skip_special``; punctuation attaches to the left."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        words: list[str] = []
        for i in ids:
            i = int(i)
            if skip_special and i == self.eos_id:
                break
            if skip_special and i in (self.pad_id, self.bos_id, self.sep_id):
                continue
            words.append(self.vocab[i] if 0 <= i < len(self.vocab) else "<unk>")
        text = " ".join(words)
        text = re.sub(r" ([.,?:!])", r"\1", text)
        return text.replace(" \n ", "\n").replace(" \n", "\n").replace("\n ", "\n")

    def encode_batch(self, texts: Sequence[str], bos: bool = True, eos: bool = True,
                     max_len: int | None = None) -> torch.Tensor:
        """(B, L) LongTensor right-padded with ``pad_id``; L = longest (or ``max_len``, truncating)."""
        rows = [self.encode(t, bos=bos, eos=eos) for t in texts]
        if max_len is not None:
            rows = [r if len(r) <= max_len else r[:max_len - 1] + ([self.eos_id] if eos else [r[max_len - 1]])
                    for r in rows]
        length = max_len if max_len is not None else max(len(r) for r in rows)
        out = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        return out


_TOKENIZER: Tokenizer | None = None


def get_tokenizer() -> Tokenizer:
    """The shared tokenizer instance."""
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = Tokenizer()
    return _TOKENIZER


# ----------------------------------------------------------------------------- datasets
class World:
    """An indexable, deterministic stream of scenes of one split: ``World(seed, split)[i]``."""

    def __init__(self, seed: int = 0, split: str = "train", image_size: int = 32,
                 min_objects: int = 1, max_objects: int = 3) -> None:
        if split not in _SPLIT_STREAM:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not 1 <= min_objects <= max_objects <= GRID * GRID:
            raise ValueError("need 1 <= min_objects <= max_objects <= 9")
        self.seed, self.split, self.image_size = seed, split, image_size
        self.min_objects, self.max_objects = min_objects, max_objects

    def scene(self, index: int) -> Scene:
        rng = np.random.default_rng([self.seed, _SPLIT_STREAM[self.split], index])
        return sample_scene(rng, self.split, self.image_size, self.min_objects, self.max_objects, index, self.seed)

    __getitem__ = scene

    def scenes(self, n: int, start: int = 0) -> list[Scene]:
        return [self.scene(i) for i in range(start, start + n)]

    def images(self, n: int, start: int = 0) -> torch.Tensor:
        return images_tensor(self.scenes(n, start))

    def caption_batch(self, n: int, start: int = 0, style: str | None = None,
                      tokenizer: Tokenizer | None = None, max_len: int | None = None) -> dict:
        scenes = self.scenes(n, start)
        styles = [style or CAPTION_STYLES[int(s.rng(0).integers(len(CAPTION_STYLES)))] for s in scenes]
        texts = [caption(s, st) for s, st in zip(scenes, styles)]
        tok = tokenizer or get_tokenizer()
        return {"images": images_tensor(scenes), "captions": texts,
                "tokens": tok.encode_batch(texts, max_len=max_len), "scenes": scenes}

    def detection_batch(self, n: int, start: int = 0, label: str = "shape") -> dict:
        scenes = self.scenes(n, start)
        return {"images": images_tensor(scenes),
                "boxes": [torch.from_numpy(s.boxes(normalized=True)) for s in scenes],
                "boxes_px": [torch.from_numpy(s.boxes()) for s in scenes],
                "labels": [torch.from_numpy(s.labels(label)) for s in scenes],
                "scenes": scenes}

    def vqa_batch(self, n: int, start: int = 0, tokenizer: Tokenizer | None = None,
                  kinds: Sequence[str] | None = None) -> dict:
        scenes = self.scenes(n, start)
        picked: list[QA] = []
        for s in scenes:
            qas = [q for q in questions(s) if kinds is None or q.kind in kinds]
            if not qas:  # e.g. kinds=("colour",) and every shape is repeated: fall back to counting
                qas = [q for q in questions(s) if q.kind == "count"]
            picked.append(qas[int(s.rng(5).integers(len(qas)))])
        tok = tokenizer or get_tokenizer()
        return {"images": images_tensor(scenes), "questions": [q.question for q in picked],
                "answers": [q.answer for q in picked], "kinds": [q.kind for q in picked],
                "question_tokens": tok.encode_batch([q.question for q in picked]),
                "answer_ids": torch.tensor([q.answer_id for q in picked], dtype=torch.long),
                "scenes": scenes}

    def instruction_batch(self, n: int, start: int = 0, kinds: Sequence[str] | None = None) -> dict:
        scenes = self.scenes(n, start)
        pool = tuple(kinds) if kinds else INSTRUCTION_KINDS
        chosen = [pool[int(s.rng(6).integers(len(pool)))] for s in scenes]
        return {"images": images_tensor(scenes),
                "conversations": [instruction(s, k) for s, k in zip(scenes, chosen)],
                "kinds": chosen, "scenes": scenes}


__all__ = [
    "ANSWERS", "CAPTION_STYLES", "COLOURS", "COLOUR_RGB", "DETAIL_PROMPTS", "HELDOUT_PAIRS",
    "INSTRUCTION_KINDS", "NUMBERS", "PAIRS", "PLURALS", "POSITIONS", "POSITION_PHRASES", "PROMPT_TEMPLATES",
    "QA", "QUESTION_KINDS", "SEEN_PAIRS", "SHAPES", "SIZES", "SPECIAL_TOKENS", "SPLITS", "Obj", "Scene",
    "Tokenizer", "World", "caption", "captions", "detailed_description", "get_tokenizer", "images_tensor",
    "instruction", "pair_id", "pair_name", "questions", "render", "sample_scene", "single_object_scenes",
]
