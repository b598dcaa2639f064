"""photoclass: from a folder of photos to a trained, evaluated and servable classifier.

    >>> import photoclass
    >>> data = photoclass.prepare("photos/", out="prepared/photos")
    >>> data.classes, len(data.indices("test"))
"""
__version__ = "0.1.0"

from .config import PrepareConfig  # noqa: E402
from .data.dataset import PreparedDataset  # noqa: E402
from .data.decode import DecodeError, decode_photo  # noqa: E402
from .data.prepare import prepare  # noqa: E402
from .errors import PhotoclassError  # noqa: E402

__all__ = ["prepare", "PrepareConfig", "PreparedDataset", "decode_photo", "DecodeError",
           "PhotoclassError", "__version__"]
