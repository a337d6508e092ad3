"""Decode, verify and store one downloaded image: nothing reaches the crawl folder that Pillow could not
decode under the pixel limit, and nothing from the URL or the server reaches a file name."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Iterable

from PIL import Image, UnidentifiedImageError

from ltkit.artifacts.manifest import image_path
from ltkit.crawl.policy import Failure
from ltkit.io import atomic_write_bytes


@dataclass
class Stored:
    """A kept image: the hash of its stored bytes, its path in the crawl folder, its size."""

    sha256: str
    path: str
    width: int
    height: int


def store_image(body: bytes, crawl_dir: Path, aux_id: int, max_pixels: int, resize: int | None = None,
                quality: int = 95) -> Stored:
    """Decode under the pixel limit, RGB (transparency on white), resize, re-encode as JPEG, write atomically."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(body)) as im:
                if im.width * im.height > max_pixels:  # checked on the header, before decoding
                    raise Failure("failed", "decompression_bomb")
                im.load()
                rgb = _to_rgb(im)
    except Failure:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Failure("failed", "decompression_bomb") from None
    except UnidentifiedImageError:
        raise Failure("failed", "not_an_image") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as e:
        raise Failure("failed", "truncated_image" if "truncated" in str(e).lower() else "decode_error") from None
    if resize and max(rgb.size) > resize:
        rgb.thumbnail((resize, resize), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=quality)
    data = buf.getvalue()
    digest = sha256(data).hexdigest()
    rel = image_path(aux_id, digest)
    if not (crawl_dir / rel).exists():  # same hash, same bytes: an identical file is already there
        atomic_write_bytes(crawl_dir / rel, data)
    return Stored(digest, rel, rgb.width, rgb.height)


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB; transparent pixels become white rather than whatever colour hides under alpha 0."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return im.convert("RGB")


def clean_partial(crawl_dir: Path, aux_ids: Iterable[int]) -> int:
    """Remove temporary files a killed run left in these classes' folders (atomic writes leave no other)."""
    n = 0
    for a in aux_ids:
        for p in (crawl_dir / "images" / f"{a:05d}").glob(".*.tmp"):
            p.unlink(missing_ok=True)
            n += 1
    return n
