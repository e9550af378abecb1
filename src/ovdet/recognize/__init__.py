"""(image, regions, vocabulary) -> labelled regions, with CLIP on crops or on one dense map."""

from ovdet.recognize.core import classify_images, recognize, requery
from ovdet.recognize.crop import CropRecognizer, crop_regions
from ovdet.recognize.dense import DenseRecognizer

__all__ = [
    "CropRecognizer",
    "DenseRecognizer",
    "classify_images",
    "crop_regions",
    "recognize",
    "requery",
]
