"""Caption wording for the shapes world's image-caption split (what CLIP learns from).

Captions vary in template, in naming (a category's synonyms are used too) and in whether colours
are said, so that plain prompts ("a photo of a star.") and coloured ones both work.
"""

from __future__ import annotations

import numpy as np

from ovdet.data.shapes.world import CATEGORIES, ShapeObject
from ovdet.vocab.prompts import ENSEMBLE

SINGLE = (
    *ENSEMBLE,
    "{}",
    "{} on a textured background.",
    "a drawing of a {}.",
    "a {} drawn on a noisy background.",
    "my favourite {}.",
    "a single {}.",
)
MULTI = (
    "a photo of a {} and a {}.",
    "a {} next to a {}.",
    "there is a {} and a {} in the scene.",
    "a picture of a {} with a {}.",
    "{} and {}.",
    "an image of a {}, and a {} too.",
)
COLOUR_PROBABILITY = 0.75
SYNONYM_PROBABILITY = 0.25


def object_phrase(obj: ShapeObject, rng: np.random.Generator) -> tuple[str, dict[str, str | None]]:
    """'red star', 'star', or a synonym, with or without its colour; and what it mentions."""
    name, _, synonyms = CATEGORIES[obj.category]
    said = (
        str(rng.choice(list(synonyms))) if synonyms and rng.random() < SYNONYM_PROBABILITY else name
    )
    colour = obj.colour if rng.random() < COLOUR_PROBABILITY else None
    mention = {"category": name, "colour": colour}
    return (f"{colour} {said}" if colour else said), mention


def caption(
    objects: list[ShapeObject], rng: np.random.Generator
) -> tuple[str, list[dict[str, str | None]]]:
    """A caption naming every object of a scene, and the (category, colour or None) it says."""
    phrases, mentions = zip(*(object_phrase(o, rng) for o in objects), strict=True)
    if len(phrases) == 1:
        text = str(rng.choice(SINGLE)).format(phrases[0])
    elif len(phrases) == 2:
        text = str(rng.choice(MULTI)).format(*phrases)
    else:
        text = "a photo of " + ", ".join(f"a {p}" for p in phrases[:-1]) + f" and a {phrases[-1]}."
    return text, list(mentions)
