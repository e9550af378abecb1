"""ovdet: open-vocabulary object detection and region recognition on frozen CLIP and SAM."""

from ovdet._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "OvdetError": "ovdet.errors",
        "Detector": "ovdet.api",
        "Recognizer": "ovdet.api",
        "load": "ovdet.api",
        "ClipRecognizer": "ovdet.recognize.clip_recognizer",
        "ViLDDetector": "ovdet.methods.vild.detector",
        "RegionSpotDetector": "ovdet.methods.regionspot.recognizer",
        "load_image": "ovdet.io.images",
        "ClipModel": "ovdet.models.clip",
        "load_model": "ovdet.models.loader",
        "list_models": "ovdet.models.bundled",
        "SamBackend": "ovdet.models.sam",
        "VisionLanguageModel": "ovdet.models.vlm",
        "CropEmbedder": "ovdet.recognize.crop",
        "DenseEmbedder": "ovdet.recognize.dense",
        "classify_images": "ovdet.recognize.core",
        "requery": "ovdet.recognize.core",
        "RegionSpotRecognizer": "ovdet.methods.regionspot.recognizer",
        "Regions": "ovdet.types",
        "Vocabulary": "ovdet.types",
        "TextEmbedder": "ovdet.vocab.embed",
        "TextEmbeddingCache": "ovdet.vocab.cache",
        "parse_vocabulary": "ovdet.vocab.parse",
    },
)
__version__ = "0.1.0"
__all__ = sorted([*__all__, "recognize"])

# `ovdet.recognize` is both a subpackage and the function below. Importing any of the
# subpackage's modules (`from ovdet import DenseEmbedder`) would bind the name to the package, so
# the package is imported here, first (it is lazy and light), and the name then given to the
# function for good.
import ovdet.recognize  # noqa: E402, F401


def recognize(image, regions, text, embedder, logit_scale):  # type: ignore[no-redef]  # noqa: F811
    """Name regions of one image: `ovdet.recognize.core.recognize` (see its docstring)."""
    from ovdet.recognize.core import recognize as recognize_regions

    return recognize_regions(image, regions, text, embedder, logit_scale)
