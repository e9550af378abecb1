"""ovdet: open-vocabulary object detection and region recognition on frozen CLIP and SAM."""

from ovdet.errors import OvdetError
from ovdet.io.images import load_image
from ovdet.models.clip import ClipModel, load_clip
from ovdet.recognize import CropRecognizer, DenseRecognizer, classify_images, recognize, requery
from ovdet.types import Regions, Vocabulary
from ovdet.vocab import TextEmbedder, TextEmbeddingCache, parse_vocabulary

__all__ = [
    "ClipModel",
    "CropRecognizer",
    "DenseRecognizer",
    "OvdetError",
    "Regions",
    "TextEmbedder",
    "TextEmbeddingCache",
    "Vocabulary",
    "classify_images",
    "load_clip",
    "load_image",
    "parse_vocabulary",
    "recognize",
    "requery",
]
__version__ = "0.1.0"
