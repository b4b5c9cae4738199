"""Request bodies → ImageRequest: multipart uploads and JSON references, with limits and exact `param`s.

Edits come as multipart or JSON; generations as JSON (OpenAI's CreateImageRequest); variations as
multipart. The operator's `[api] default_response_format` fills in a missing `response_format`; a missing
`model` is left empty for the image service to default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import orjson
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request

from imagegate.config import ApiSettings, LimitSettings
from imagegate.core.errors import ImageTooLarge, InvalidRequest, TooLarge
from imagegate.core.jobs import FileRef, ImageRef, ImageRequest, Operation, ResponseFormat, UploadRef, UrlRef
from imagegate.core.validation import kind_of, parse_common

IMAGE_FIELDS = ("image", "image[]")
MAX_FILES = 17  # the largest catalog maximum (16) plus a mask


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_form(request: Request, limits: LimitSettings, *, max_files: int) -> FormData:
    """Parse a multipart body, spooling files; malformed bodies and limit breaches are 4xx."""
    try:
        return await request.form(max_files=max_files, max_fields=limits.max_form_fields,
                                  max_part_size=limits.max_field_bytes)
    except (MultiPartException, HTTPException) as exc:
        message = str(getattr(exc, "detail", None) or getattr(exc, "message", None) or exc)
        if "Too many files" in message:
            raise InvalidRequest(f"Too many files in the form; at most {max_files} are accepted.",
                                 param="image", code="too_many_images") from None
        if "Too many fields" in message:
            raise InvalidRequest("Too many form fields.", code="too_many_fields") from None
        if "Part exceeded maximum size" in message:
            raise TooLarge(f"A form field is larger than {limits.max_field_bytes} bytes.") from None
        raise InvalidRequest("The multipart body is malformed.", code="invalid_multipart") from None
    except (ClientDisconnect, AssertionError) as exc:
        raise InvalidRequest("The multipart body is malformed.", code="invalid_multipart") from exc


def upload_ref(param: str, value: Any, limits: LimitSettings) -> UploadRef:
    if not isinstance(value, UploadFile):
        raise InvalidRequest(f"'{param}' must be a file upload, not a text field.", param=param)
    size = value.size if value.size is not None else 0
    if size == 0:
        raise InvalidRequest(f"'{param}' is empty.", param=param, code="unsupported_image_format")
    if size > limits.max_image_bytes:
        raise ImageTooLarge(f"'{param}' is larger than {limits.max_image_bytes // (1024 * 1024)} MB.",
                            param=param)
    return UploadRef(param=param, file=value.file, filename=value.filename or "image", size=size)


def request_from_form(operation: Operation, form: FormData, limits: LimitSettings, api: ApiSettings) -> ImageRequest:
    uploads = [(key, value) for key, value in form.multi_items() if key in IMAGE_FIELDS]
    single = len(uploads) == 1
    images: list[ImageRef] = [upload_ref(key if single else f"image[{i}]", value, limits)
                              for i, (key, value) in enumerate(uploads)]
    masks = form.getlist("mask")
    if len(masks) > 1:
        raise InvalidRequest("Only one 'mask' may be sent.", param="mask")
    mask = upload_ref("mask", masks[0], limits) if masks else None
    fields: dict[str, Any] = {}
    for key, value in form.multi_items():
        if key in IMAGE_FIELDS or key == "mask":
            continue
        if isinstance(value, UploadFile):
            raise InvalidRequest(f"'{key}' must be a text field, not a file.", param=key)
        fields[key] = value
    return _image_request(operation, fields, images, mask, api)


def _image_request(operation: Operation, fields: Mapping[str, Any], images: list[ImageRef], mask: ImageRef | None,
                   api: ApiSettings) -> ImageRequest:
    model = fields.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequest(f"'model' must be a string; got {kind_of(model)}.", param="model")
    prompt = fields.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise InvalidRequest(f"'prompt' must be a string; got {kind_of(prompt)}.", param="prompt")
    common = parse_common(fields)
    response_format = cast(ResponseFormat, common.response_format or api.default_response_format)
    return ImageRequest(operation=operation, model=(model or "").strip(), prompt=prompt or "", images=images, mask=mask,
                        n=common.n, response_format=response_format, run_async=common.run_async,
                        stream=common.stream, options=common.options)


async def read_json(request: Request, limits: LimitSettings) -> dict[str, Any]:
    size = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_json_bytes:
            raise TooLarge(f"The JSON body is larger than {limits.max_json_bytes // (1024 * 1024)} MB.")
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


def _url(param: str, value: Any) -> UrlRef:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"'{param}' must be a non-empty URL string.", param=param,
                             code="invalid_image_url")
    return UrlRef(param=param, url=value.strip())


def _reference(param: str, item: Any) -> ImageRef:
    """One `{image_url}` or `{file_id}` object: exactly one of the two."""
    if not isinstance(item, dict):
        raise InvalidRequest(f"'{param}' must be an object with 'image_url' or 'file_id'.", param=param)
    present = [k for k in ("image_url", "file_id") if item.get(k) is not None]
    if len(present) != 1:
        raise InvalidRequest(f"'{param}' must hold exactly one of 'image_url' or 'file_id'.", param=param)
    if present[0] == "image_url":
        value = item["image_url"]
        if isinstance(value, dict):  # chat-style {"image_url": {"url": ...}}
            value = value.get("url")
        return _url(f"{param}.image_url", value)
    file_id = item["file_id"]
    if not isinstance(file_id, str) or not file_id:
        raise InvalidRequest(f"'{param}.file_id' must be a string.", param=f"{param}.file_id")
    return FileRef(param=f"{param}.file_id", file_id=file_id)


def request_from_json(operation: Operation, body: Mapping[str, Any], api: ApiSettings) -> ImageRequest:
    images: list[ImageRef] = []
    if body.get("image_url") is not None:
        images.append(_url("image_url", body["image_url"]))
    urls = body.get("image_urls")
    if urls is not None:
        if not isinstance(urls, list):
            raise InvalidRequest(f"'image_urls' must be a list of URL strings; got {kind_of(urls)}.",
                                 param="image_urls")
        images.extend(_url(f"image_urls[{i}]", u) for i, u in enumerate(urls))
    refs = body.get("images")
    if refs is not None:
        if not isinstance(refs, list):
            raise InvalidRequest(f"'images' must be a list of objects; got {kind_of(refs)}.", param="images")
        images.extend(_reference(f"images[{i}]", item) for i, item in enumerate(refs))
    if body.get("image") is not None:
        raise InvalidRequest("JSON requests name images with 'image_url', 'image_urls' or 'images'; "
                             "send files as multipart/form-data.", param="image")
    mask = _reference("mask", body["mask"]) if body.get("mask") is not None else None
    return _image_request(operation, body, images, mask, api)


# The body encodings each operation takes, as OpenAI's API does.
ENCODINGS: dict[Operation, tuple[str, ...]] = {"edit": ("multipart/form-data", "application/json"),
                                               "generate": ("application/json",),
                                               "variation": ("multipart/form-data",)}


async def read_image_request(operation: Operation, request: Request, limits: LimitSettings,
                             api: ApiSettings) -> ImageRequest:
    kind = _content_type(request)
    if kind not in ENCODINGS[operation]:
        raise InvalidRequest(f"Send the request as {' or '.join(ENCODINGS[operation])}.",
                             code="unsupported_content_type")
    if kind == "multipart/form-data":
        return request_from_form(operation, await read_form(request, limits, max_files=MAX_FILES), limits, api)
    return request_from_json(operation, await read_json(request, limits), api)
