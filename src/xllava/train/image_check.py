"""Every training image is readable, checked before training starts, with the record that names it.

An empty or truncated image otherwise fails deep inside the vision feature cache or the collator,
after the stage has started, with Pillow's message and neither the image's record nor its file.
Each distinct image is opened and verified once (Pillow's `verify` reads the whole file and checks
its structure, e.g. PNG chunk checksums, without decoding the pixels).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from xllava.train.data import DataError, Sample


def check_images(samples: list[Sample]) -> None:
    """DataError (file:line of the first record using it, the image path, Pillow's reason) for the
    first image that is empty, truncated or not an image."""
    seen: set[Path] = set()
    for sample in samples:
        image = sample.image
        if image is None or image in seen:
            continue
        seen.add(image)
        reason = _problem(image)
        if reason is not None:
            file, line = sample.origin
            raise DataError(file, line, "image", f"sample {sample.id}: image file {image} {reason}")


def _problem(image: Path) -> str | None:
    try:
        if image.stat().st_size == 0:
            return "is empty"
        with Image.open(image) as im:
            im.verify()
    except FileNotFoundError:
        return "does not exist"
    except Exception as e:  # Pillow raises many kinds: UnidentifiedImageError, OSError, SyntaxError ...
        return f"is unreadable ({type(e).__name__}: {e})"
    return None
