"""An image job as the core sees it: the normalised request, the job sent to a provider, its result.

Every operation of the Images API is one kind of job: an edit (source images and a prompt), a generation
(a prompt alone) or a variation (one source image alone). They share one pipeline: validation, holds and
settlement, tasks, idempotency, routing and delivery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

from imagegate.core.media import OutputImage, SourceImage
from imagegate.core.usage import TokenUsage

Operation = Literal["edit", "generate", "variation"]
OPERATIONS: tuple[Operation, ...] = ("edit", "generate", "variation")
ResponseFormat = Literal["url", "b64_json"]


@dataclass(frozen=True, slots=True)
class UploadRef:
    """An image sent in the request body itself (a multipart part), not yet content-checked."""

    param: str
    file: BinaryIO
    filename: str
    size: int


@dataclass(frozen=True, slots=True)
class UrlRef:
    """A remote image the gateway must fetch (or a data: URL)."""

    param: str
    url: str


@dataclass(frozen=True, slots=True)
class FileRef:
    """An image uploaded earlier through /v1/files."""

    param: str
    file_id: str


ImageRef = UploadRef | UrlRef | FileRef


@dataclass(slots=True)
class ImageRequest:
    """A client's request after parsing, before validation against a model.

    `options` holds only the optional fields the client actually sent (absent ≠ null), keyed by their
    canonical names (`output_compression`, never the `compression` alias).
    """

    operation: Operation
    model: str
    prompt: str
    images: list[ImageRef]
    mask: ImageRef | None = None
    n: int = 1
    response_format: ResponseFormat = "url"
    run_async: bool = False
    stream: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def refs(self) -> list[ImageRef]:
        """Every image reference, the mask last."""
        return [*self.images, *([self.mask] if self.mask is not None else [])]


@dataclass(frozen=True, slots=True)
class ImageJob:
    """What a provider receives: images resolved, options reduced to what the model takes."""

    operation: Operation
    model: str  # the public model id the client asked for
    upstream_model: str  # the id the upstream knows it by
    prompt: str
    n: int
    images: Sequence[SourceImage]
    mask: SourceImage | None
    options: Mapping[str, Any]
    response_format: ResponseFormat
    max_output_bytes: int = 64 * 1024 * 1024  # the most one output image may take (ModelSpec.output_bytes)


@dataclass(frozen=True, slots=True)
class ImageResult:
    """What a provider returns, every value checked by the adapter that read it from the upstream.

    `usage` is shown to the client and prices token-priced models; None when the upstream reported none or
    nothing usable (see Price.actual for the charge then).
    """

    images: Sequence[OutputImage]
    usage: TokenUsage | None = None
    created: int | None = None
    echo: Mapping[str, Any] = field(default_factory=dict)  # background, output_format, quality, size
    cost_micros: int | None = None  # set when the upstream reports its own cost


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a streamed job, checked where it entered: a partial image, or the final one.

    `echo` holds the event's own descriptive fields (size, quality, background, output_format); `usage` is
    set on the final event when the upstream reported it.
    """

    image: OutputImage
    final: bool
    index: int = 0  # partial_image_index of a partial image
    created_at: int | None = None
    echo: Mapping[str, Any] = field(default_factory=dict)
    usage: TokenUsage | None = None
