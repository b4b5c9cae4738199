"""Fetching user-supplied image URLs (placeholder until the hardened fetcher lands)."""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from urllib.parse import urlsplit

from imagegate.core.edits import UrlRef
from imagegate.core.errors import ImageFetchFailed, InvalidImageURL
from imagegate.core.media import SourceImage
from imagegate.fetch.policy import FetchSettings
from imagegate.imaging import check_image


class SafeFetcher:
    def __init__(self, settings: FetchSettings, **_: object) -> None:
        self._settings = settings

    async def fetch_all(self, refs: Sequence[UrlRef]) -> list[SourceImage]:
        out = []
        for ref in refs:
            if ref.url.startswith("data:"):
                header, _, payload = ref.url.partition(",")
                try:
                    data = base64.b64decode(payload, validate=True)
                except binascii.Error:
                    raise InvalidImageURL("bad data URL", param=ref.param) from None
                out.append(await check_image(io.BytesIO(data), param=ref.param, filename="image",
                                             size=len(data)))
                continue
            parts = urlsplit(ref.url)
            if parts.scheme not in ("http", "https") or "@" in parts.netloc or parts.fragment or "#" in ref.url:
                raise InvalidImageURL(f"'{ref.param}' is not an allowed URL.", param=ref.param)
            raise ImageFetchFailed(f"'{ref.param}' could not be fetched.", param=ref.param)
        return out

    async def aclose(self) -> None:
        return None
