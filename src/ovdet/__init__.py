"""ovdet: open-vocabulary object detection and region recognition on frozen CLIP and SAM."""

from ovdet.errors import OvdetError
from ovdet.io.images import load_image
from ovdet.models.clip import ClipModel
from ovdet.models.loader import load_model
from ovdet.models.sam import SamBackend
from ovdet.models.vlm import VisionLanguageModel
from ovdet.recognize import CropRecognizer, DenseRecognizer, classify_images, recognize, requery
from ovdet.recognize.regionspot import RegionSpotRecognizer
from ovdet.types import Regions, Vocabulary
from ovdet.vocab import TextEmbedder, TextEmbeddingCache, parse_vocabulary

__all__ = [
    "ClipModel",
    "CropRecognizer",
    "DenseRecognizer",
    "OvdetError",
    "RegionSpotRecognizer",
    "Regions",
    "SamBackend",
    "TextEmbedder",
    "TextEmbeddingCache",
    "VisionLanguageModel",
    "Vocabulary",
    "classify_images",
    "load_image",
    "load_model",
    "parse_vocabulary",
    "recognize",
    "requery",
]
__version__ = "0.1.0"
