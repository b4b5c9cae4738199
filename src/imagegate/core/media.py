"""Images as the gateway holds them: checked, spooled, described."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Literal

ImageFormat = Literal["png", "jpeg", "webp"]

MIME_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the content check learned about an image."""

    format: ImageFormat
    width: int
    height: int
    mode: str  # Pillow mode: "RGB", "RGBA", "L", "LA", "P", ...
    has_alpha: bool

    @property
    def mime_type(self) -> str:
        return MIME_TYPES[self.format]


@dataclass(slots=True)
class SourceImage:
    """One image that entered the gateway by any route, after the content check.

    `file` is a seekable binary file (in memory when small, on disk when large); the request that
    created it closes it. `param` names the input the image came from, e.g. "image[1]", "image_urls[2]".
    """

    param: str
    filename: str
    size: int
    info: ImageInfo
    file: BinaryIO

    def read(self) -> bytes:
        """The whole image. Call from a worker thread when the image may be large."""
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        self.file.close()


@dataclass(frozen=True, slots=True)
class OutputImage:
    """One image an engine or upstream produced, after the output check read its format and dimensions from
    its header (see imaging.output_image). `b64_json` keeps the Base64 text it arrived in, if any, so that
    it can be passed on without encoding it again.

    Providers whose upstream answers with (ephemeral) URLs download them before returning.
    """

    data: bytes
    format: ImageFormat
    width: int
    height: int
    b64_json: str | None = None
    revised_prompt: str | None = None  # the prompt as the upstream rewrote it for this image, if it says

    @property
    def mime_type(self) -> str:
        return MIME_TYPES[self.format]
