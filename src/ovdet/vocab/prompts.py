"""Prompt templates. Each set is a tuple of format strings with one `{}` for the class name."""

from __future__ import annotations

SINGLE = ("a photo of a {}.",)

# ViLD's prompt (Gu et al., 2022, section 3.2).
VILD = ("a photo of a {} in the scene.",)

# A many-template ensemble in the spirit of CLIP's and ViLD's (which averaged 63 templates):
# views, sizes, quality and context of an object in a scene.
ENSEMBLE = (
    "a photo of a {}.",
    "a photo of a {} in the scene.",
    "a photo of the {}.",
    "a photo of one {}.",
    "a photo of many {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "a close-up photo of a {}.",
    "a cropped photo of a {}.",
    "a blurry photo of a {}.",
    "a bright photo of a {}.",
    "a dark photo of a {}.",
    "a low resolution photo of a {}.",
    "a good photo of a {}.",
    "a photo of a {} in the background.",
    "a photo of a partly hidden {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "a {} in the image.",
    "itap of a {}.",
    "a rendering of a {}.",
)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {"single": SINGLE, "vild": VILD, "ensemble": ENSEMBLE}


def get_templates(name_or_templates: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A template set by name ("single", "vild", "ensemble"), or a checked list of templates."""
    if isinstance(name_or_templates, str):
        if name_or_templates not in TEMPLATE_SETS:
            raise ValueError(
                f"unknown template set {name_or_templates!r}; choose from {sorted(TEMPLATE_SETS)}"
            )
        return TEMPLATE_SETS[name_or_templates]
    templates = tuple(name_or_templates)
    if not templates:
        raise ValueError("template list is empty")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(f"each template needs exactly one '{{}}', got {t!r}")
    return templates
