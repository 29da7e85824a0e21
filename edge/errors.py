"""The project's exception types, importable without TensorFlow."""


class SkinlesionError(Exception):
    """Base class for every error this project raises on purpose."""


class ImageError(SkinlesionError, ValueError):
    """An input could not be turned into model pixels.

    The message always names the source (a path, or a description such as
    ``<bytes: 1234 bytes>``) and the cause, so a user with a folder of
    thousands of photos knows which one to look at.
    """


class BundleError(SkinlesionError, ValueError):
    """A model bundle is missing, inconsistent or fails its checksums."""


class LabelsError(SkinlesionError, ValueError):
    """A labels file is missing, empty, or has a blank or repeated line; the message names the file."""
