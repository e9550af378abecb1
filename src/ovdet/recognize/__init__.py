"""(image, regions, vocabulary) -> labelled regions, with CLIP on crops or on one dense map."""

from ovdet._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "classify_images": "ovdet.recognize.core",
        "recognize": "ovdet.recognize.core",
        "requery": "ovdet.recognize.core",
        "CropEmbedder": "ovdet.recognize.crop",
        "crop_regions": "ovdet.recognize.crop",
        "DenseEmbedder": "ovdet.recognize.dense",
    },
)
