"""The OpenAPI 3.1 document of the gateway's own API, served at GET /openapi.json.

It describes what the routes accept and answer, errors included, so that clients can be generated from
it and the test suite can fuzz every operation against it (schemathesis). Per-model rules (which sizes,
how many images) are data in the catalog and shown by GET /v1/models; here a field is described by the
widest value any model takes.
"""

from __future__ import annotations

from typing import Any

from imagegate.core.capabilities import MAX_N
from imagegate.core.validation import RESPONSE_FORMATS

JSON = "application/json"
_ERRORS = {
    400: "The request is invalid; `param` names the field.",
    401: "Missing, unknown, expired or revoked API key.",
    402: "Not enough balance, or the key's spend limit is reached.",
    403: "The key may not use this model.",
    404: "No such object (or not the caller's).",
    408: "The request body stalled.",
    409: "The Idempotency-Key is in use by another request, or was used with a different one.",
    413: "The request or one of its images is too large.",
    429: "Rate limited (by the gateway or the provider); see Retry-After.",
    502: "The provider failed; nothing was charged.",
    503: "No provider could serve the request now; see Retry-After.",
    504: "The provider did not answer in time; nothing was charged.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Error"), _ERRORS[s]) for s in statuses}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                   "description": "Makes a retry safe: the same key and request get the first answer, charged once.",
                   "schema": {"type": "string", "minLength": 1, "maxLength": 255}}

_OPTIONS: dict[str, Any] = {
    "n": {"type": "integer", "minimum": 1, "maximum": MAX_N, "default": 1},
    "size": {"type": "string", "description": "`auto` or WIDTHxHEIGHT; the model's sizes are in /v1/models."},
    "quality": {"type": "string"},
    "background": {"type": "string"},
    "output_format": {"type": "string", "enum": ["png", "jpeg", "webp"]},
    "output_compression": {"type": "integer", "minimum": 0, "maximum": 100},
    "moderation": {"type": "string"},
    "input_fidelity": {"type": "string"},
    "partial_images": {"type": "integer", "minimum": 0, "maximum": 3},
    "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "url"},
    "user": {"type": "string"},
    "aspect_ratio": {"type": "string"},
    "resolution": {"type": "string"},
    "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    "async": {"type": "boolean", "default": False,
              "description": "Accept the job as a task and answer at once; poll `poll_url`."},
    "stream": {"type": "boolean", "default": False,
               "description": "Answer with server-sent events: partial images, then the final one (models that "
                              "stream; /v1/models says which)."},
    "style": {"type": "string"},
    "safety_identifier": {"type": "string"},
}
_TEXT = {"model": {"type": "string", "minLength": 1}, "prompt": {"type": "string", "minLength": 1}}
_REFERENCE = {"type": "object", "description": "Exactly one of `image_url` (http(s) or data: URL) or `file_id`.",
              "properties": {"image_url": {"type": "string"}, "file_id": {"type": "string"}},
              "minProperties": 1, "maxProperties": 1}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "code", "param"], "properties": {
            "message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "string"},
            "param": {"type": ["string", "null"]}, "retryable": {"type": "boolean"},
            "retry_after": {"type": "number"}}}}},
    "ImageEditMultipart": {
        "type": "object", "required": ["model", "prompt"],
        "properties": {**_TEXT,
                       "image": {"type": "string", "format": "binary", "description": "PNG, JPEG or WebP; repeatable."},
                       "image[]": {"type": "array", "items": {"type": "string", "format": "binary"}},
                       "mask": {"type": "string", "format": "binary"},
                       "compression": _OPTIONS["output_compression"], **_OPTIONS}},
    "ImageEditJson": {
        "type": "object", "required": ["model", "prompt"],
        "properties": {**_TEXT, "image_url": {"type": "string"},
                       "image_urls": {"type": "array", "items": {"type": "string"}},
                       "images": {"type": "array", "items": _REFERENCE}, "mask": _REFERENCE, **_OPTIONS}},
    "ImageGeneration": {
        "type": "object", "required": ["prompt"],
        "properties": {"model": _TEXT["model"], "prompt": _TEXT["prompt"], **_OPTIONS}},
    "ImageVariation": {
        "type": "object", "required": ["image"],
        "properties": {"image": {"type": "string", "format": "binary", "description": "A square PNG."},
                       "model": _TEXT["model"], **{k: _OPTIONS[k] for k in ("n", "size", "response_format", "user",
                                                                           "async")}}},
    "StreamEvent": {
        "type": "object", "required": ["type"],
        "description": "One server-sent event: `image_edit.partial_image` / `image_generation.partial_image`, "
                       "`…completed` (with `usage` and `billing_transaction_id`), or `error` (with `error`).",
        "properties": {"type": {"type": "string"}, "b64_json": {"type": "string"}, "created_at": {"type": "integer"},
                       "partial_image_index": {"type": "integer"}, "usage": _ref("Usage"),
                       "error": {"type": "object"}}},
    "FileList": {
        "type": "object", "required": ["object", "data", "has_more"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _ref("File")},
                       "first_id": {"type": ["string", "null"]}, "last_id": {"type": ["string", "null"]},
                       "has_more": {"type": "boolean"}}},
    "ImageData": {"type": "object", "properties": {"url": {"type": "string"}, "b64_json": {"type": "string"},
                                                   "revised_prompt": {"type": "string"}}},
    "Usage": {"type": "object", "required": ["total_tokens", "input_tokens", "output_tokens"], "properties": {
        "total_tokens": {"type": "integer"}, "input_tokens": {"type": "integer"},
        "output_tokens": {"type": "integer"}, "input_tokens_details": {"type": "object"},
        "output_tokens_details": {"type": "object"}}},
    "ImagesResponse": {
        "type": "object", "required": ["created", "data", "billing_transaction_id"],
        "properties": {"created": {"type": "integer"}, "data": {"type": "array", "items": _ref("ImageData")},
                       "usage": _ref("Usage"), "billing_transaction_id": {"type": "string"},
                       "background": {"type": "string"}, "output_format": {"type": "string"},
                       "quality": {"type": "string"}, "size": {"type": "string"}}},
    "Task": {
        "type": "object", "required": ["id", "task_id", "object", "poll_url", "status", "model", "data", "created"],
        "properties": {"id": {"type": "string"}, "task_id": {"type": "string"}, "object": {"const": "image.task"},
                       "poll_url": {"type": "string"}, "created": {"type": "integer"},
                       "updated": {"type": "integer"}, "model": {"type": "string"},
                       "status": {"type": "string", "enum": ["pending", "processing", "completed", "failed"]},
                       "data": {"type": "array", "items": _ref("ImageData")}, "usage": _ref("Usage"),
                       "billing_transaction_id": {"type": "string"},
                       "error": {"type": "object", "required": ["code", "message"],
                                 "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
    "FileUpload": {
        "type": "object", "required": ["file", "purpose"],
        "properties": {"file": {"type": "string", "format": "binary"},
                       "purpose": {"type": "string", "enum": ["user_data", "vision"]},
                       "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
                       "expires_after[seconds]": {"type": "integer", "minimum": 3600, "maximum": 2592000}}},
    "File": {
        "type": "object", "required": ["id", "object", "bytes", "created_at", "filename", "purpose", "status"],
        "properties": {"id": {"type": "string"}, "object": {"const": "file"}, "bytes": {"type": "integer"},
                       "created_at": {"type": "integer"}, "filename": {"type": "string"},
                       "purpose": {"type": "string"}, "status": {"type": "string"},
                       "expires_at": {"type": ["integer", "null"]}}},
    "FileDeleted": {"type": "object", "required": ["id", "object", "deleted"],
                    "properties": {"id": {"type": "string"}, "object": {"const": "file"},
                                   "deleted": {"type": "boolean"}}},
    "Model": {"type": "object", "required": ["id", "object", "capabilities", "pricing"],
              "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
                             "owned_by": {"type": "string"}, "capabilities": {"type": "object"},
                             "pricing": {"type": "object"}}},
    "ModelList": {"type": "object", "required": ["object", "data"],
                  "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _ref("Model")}}},
}

_IMAGE_BYTES = {"description": "The image", "content": {m: {"schema": {"type": "string", "format": "binary"}}
                                                          for m in ("image/png", "image/jpeg", "image/webp")}}
_TASK_ID = _path_param("task_id", "The task's id, `ldtask_…`.")
_FILE_ID = _path_param("file_id", "The file's id, `file-…`.")


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _image_operation(summary: str, content: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    answers: dict[str, Any] = {JSON: {"schema": {"oneOf": [_ref("ImagesResponse"), _ref("Task")]}}}
    if stream:
        answers["text/event-stream"] = {"schema": {"type": "string"}, "x-events": _ref("StreamEvent")}
    return {"post": {
        "summary": summary, "parameters": [IDEMPOTENCY_KEY], "requestBody": {"required": True, "content": content},
        "responses": {"200": {"description": "The images; the accepted task when `async` is true; server-sent "
                                             "events when `stream` is true", "content": answers},
                      **_errors(400, 401, 402, 403, 408, 409, 413, 429, 502, 503, 504)}}}


def _task_route(summary: str) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": [_TASK_ID],
                    "responses": {"200": _json(_ref("Task")), **_errors(401, 404)}}}


PATHS: dict[str, Any] = {
    "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": _json(
        {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}})}}},
    "/metrics": {"get": {"summary": "Prometheus metrics of this process", "security": [], "responses": {"200": {
        "description": "Metrics in the Prometheus text format",
        "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    "/openapi.json": {"get": {"summary": "This document", "security": [],
                              "responses": {"200": _json({"type": "object"})}}},
    "/v1/images/edits": _image_operation(
        "Edit images: one or more sources and a prompt (and a mask where the model takes one)",
        {"multipart/form-data": {"schema": _ref("ImageEditMultipart")}, JSON: {"schema": _ref("ImageEditJson")}},
        stream=True),
    "/v1/images/generations": _image_operation(
        "Generate images from a prompt", {JSON: {"schema": _ref("ImageGeneration")}}, stream=True),
    "/v1/images/variations": _image_operation(
        "Variations of one image", {"multipart/form-data": {"schema": _ref("ImageVariation")}}, stream=False),
    "/v1/tasks/{task_id}": _task_route("An async task's status and, once completed, its images"),
    "/v1/images/generations/{task_id}": _task_route("The same as /v1/tasks/{task_id}"),
    "/v1/images/{task_id}": _task_route("The same as /v1/tasks/{task_id}"),
    "/v1/files": {
        "post": {"summary": "Upload an image for later use as `images[].file_id`", "parameters": [IDEMPOTENCY_KEY],
                 "requestBody": {"required": True,
                                 "content": {"multipart/form-data": {"schema": _ref("FileUpload")}}},
                 "responses": {"200": _json(_ref("File")), **_errors(400, 401, 408, 409, 413)}},
        "get": {"summary": "The caller's files, newest first unless `order=asc`",
                "parameters": [_query("after", {"type": "string"}, "List the files after this one."),
                               _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000}),
                               _query("order", {"type": "string", "enum": ["asc", "desc"]}),
                               _query("purpose", {"type": "string"})],
                "responses": {"200": _json(_ref("FileList")), **_errors(400, 401)}}},
    "/v1/files/{file_id}": {
        "get": {"summary": "A file's metadata", "parameters": [_FILE_ID],
                "responses": {"200": _json(_ref("File")), **_errors(401, 404)}},
        "delete": {"summary": "Delete a file", "parameters": [_FILE_ID],
                   "responses": {"200": _json(_ref("FileDeleted")), **_errors(401, 404)}}},
    "/v1/files/{file_id}/content": {"get": {"summary": "A file's bytes", "parameters": [_FILE_ID],
                                            "responses": {"200": _IMAGE_BYTES, **_errors(401, 404)}}},
    "/v1/models": {"get": {"summary": "The models served here, with capabilities and prices",
                           "responses": {"200": _json(_ref("ModelList")), **_errors(401)}}},
    "/v1/models/{model_id}": {"get": {"summary": "One model", "parameters": [_path_param("model_id", "A model id.")],
                                      "responses": {"200": _json(_ref("Model")), **_errors(401, 404)}}},
    "/blobs/{key}": {"get": {"summary": "An output image, by the unguessable key in its URL", "security": [],
                             "parameters": [_path_param("key", "The key from an output URL.")],
                             "responses": {"200": _IMAGE_BYTES, **_errors(404)}}},
}


def document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "imagegate", "version": version,
                 "description": "An OpenAI-compatible image gateway. Errors use OpenAI's envelope; every "
                                "answer carries `x-request-id`."},
        "paths": PATHS,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }
