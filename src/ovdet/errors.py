"""The exceptions ovdet raises for bad input; each message says what arrived."""

from __future__ import annotations


class OvdetError(Exception):
    """Base of every error ovdet raises on purpose; the CLI prints these as one line."""


class ImageError(OvdetError, ValueError):
    """An image could not be read or has an unusable size, mode or shape."""


class BoxError(OvdetError, ValueError):
    """Boxes that are malformed, non-finite, inverted or outside their image."""


class VocabularyError(OvdetError, ValueError):
    """An empty, malformed or duplicated vocabulary."""


class FormatError(OvdetError, ValueError):
    """A JSON or checkpoint file that does not have the expected structure."""


class WeightsNotFoundError(OvdetError, OSError):
    """Model weights are neither cached nor reachable."""


class ConfigError(OvdetError, ValueError):
    """An option or configuration value out of its range (a count of 0, a NaN rate, ...)."""


class DeviceError(OvdetError, ValueError):
    """A torch device that this machine or torch build does not have."""
