"""An image edit as the core sees it: the normalised request, the job sent to a provider, its result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

from imagegate.core.media import OutputImage, SourceImage
from imagegate.core.usage import TokenUsage

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
class EditRequest:
    """A client's edit request after parsing, before validation against a model.

    `options` holds only the optional fields the client actually sent (absent ≠ null), keyed by their
    canonical names (`output_compression`, never the `compression` alias).
    """

    model: str
    prompt: str
    images: list[ImageRef]
    mask: ImageRef | None = None
    n: int = 1
    response_format: ResponseFormat = "url"
    run_async: bool = False
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EditJob:
    """What a provider receives: images resolved, options reduced to what the model takes."""

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
class EditResult:
    """What a provider returns, every value checked by the adapter that read it from the upstream.

    `usage` is shown to the client and prices token-priced models; None when the upstream reported none or
    nothing usable (see Price.actual for the charge then).
    """

    images: Sequence[OutputImage]
    usage: TokenUsage | None = None
    created: int | None = None
    echo: Mapping[str, Any] = field(default_factory=dict)  # background, output_format, quality, size
    cost_micros: int | None = None  # set when the upstream reports its own cost
