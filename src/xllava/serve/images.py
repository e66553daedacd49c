"""Images from `image_url` parts: base64 data URLs always, local files only under an allowed folder.

Every limit is checked before the expensive step it guards: the byte size from the base64 length
before decoding it, the pixel count from the image header before decoding the pixels.
Remote http(s) URLs are refused: the server fetches nothing from the network (no SSRF).
Only the common raster formats are opened (an allow-list handed to Pillow), so no request reaches
a format that Pillow delegates to an outside program (EPS to Ghostscript) or a rarely used decoder;
error messages carry Pillow's reason with any file path in it removed.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from PIL import Image

from xllava.serve.config import ServeConfig
from xllava.serve.errors import ApiError
from xllava.serve.limits import check_aspect_ratio

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?)(?P<b64>;base64)?,", re.I)
_WHITESPACE = re.compile(rb"\s+")
# Pillow's names for the formats a request may send;
# a GIF or multi-page TIFF is read as its first frame
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\s'\"\\/]+)+[\\/]?")


def load_image(url: str, cfg: ServeConfig, param: str) -> Image.Image:
    """The RGB image an `image_url.url` names, or an ApiError (400 bad input, 413 over a limit)."""
    if url.startswith("data:"):
        raw = _data_url_bytes(url, cfg, param)
    elif url.startswith(("http://", "https://")):
        raise ApiError(400, "remote image URLs are not fetched by this server; send the image as a "
                       "base64 data URL (data:image/png;base64,...)", param, "invalid_image_url")
    else:
        raw = _local_file_bytes(url, cfg, param)
    return _decode(raw, cfg, param)


def _data_url_bytes(url: str, cfg: ServeConfig, param: str) -> bytes:
    m = _DATA_URL.match(url)
    if not m or not m.group("b64"):
        raise ApiError(400, "image data URL must be base64: data:image/<type>;base64,<data>", param,
                       "invalid_image_url")
    payload = _WHITESPACE.sub(b"", url[m.end():].encode("ascii", errors="replace"))
    if len(payload) * 3 // 4 > cfg.max_image_bytes + 2:
        raise _too_big(len(payload) * 3 // 4, cfg, param)
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "image data URL holds invalid base64", param, "invalid_base64") from None
    if len(raw) > cfg.max_image_bytes:
        raise _too_big(len(raw), cfg, param)
    return raw


def _local_file_bytes(url: str, cfg: ServeConfig, param: str) -> bytes:
    if cfg.local_image_root is None:
        raise ApiError(400, "local image paths are not allowed by this server (the operator enables them "
                       "with --local-images DIR); send a base64 data URL", param, "invalid_image_url")
    path_text = unquote(urlparse(url).path) if url.startswith("file://") else url
    path = Path(path_text)
    if not path.is_absolute():
        path = cfg.local_image_root / path
    path = path.resolve()
    if not path.is_relative_to(cfg.local_image_root):
        raise ApiError(400, f"local image paths must lie under {cfg.local_image_root}", param, "invalid_image_url")
    if not path.is_file():
        raise ApiError(400, f"no image file at {path}", param, "invalid_image_url")
    size = path.stat().st_size
    if size > cfg.max_image_bytes:
        raise _too_big(size, cfg, param)
    return path.read_bytes()


def _reason(e: Exception) -> str:
    """Pillow's reason, without file paths (a decoder may name a temporary file) and not too long."""
    text = _PATH.sub("<path>", str(e))
    return f"{type(e).__name__}: {text[:200]}"


def _decode(raw: bytes, cfg: ServeConfig, param: str) -> Image.Image:
    try:
        im = Image.open(io.BytesIO(raw), formats=FORMATS)
        w, h = im.size  # from the header; pixels are not decoded yet
    except Image.DecompressionBombError:
        raise ApiError(413, "image too large: its header declares more pixels than Pillow's bomb limit",
                       param, "image_too_large") from None
    except Image.UnidentifiedImageError:
        raise ApiError(400, "could not decode image: not a PNG, JPEG, WebP, GIF, BMP or TIFF image",
                       param, "invalid_image") from None
    except Exception as e:  # PIL raises many kinds (OSError, SyntaxError, ValueError ...)
        raise ApiError(400, f"could not decode image: {_reason(e)}", param, "invalid_image") from None
    if w * h > cfg.max_image_pixels:
        raise ApiError(413, f"image has {w}x{h} = {w * h} pixels, more than the limit of {cfg.max_image_pixels}",
                       param, "image_too_large")
    check_aspect_ratio(w, h, cfg, param)
    try:
        im.load()
        # convert() copies even an RGB image: one full-size copy fewer for the common case
        return im if im.mode == "RGB" else im.convert("RGB")
    except Exception as e:
        raise ApiError(400, f"could not decode image: {_reason(e)}", param, "invalid_image") from None


def _too_big(n: int, cfg: ServeConfig, param: str) -> ApiError:
    return ApiError(413, f"image is {n} bytes, more than the limit of {cfg.max_image_bytes} bytes",
                    param, "image_too_large")
