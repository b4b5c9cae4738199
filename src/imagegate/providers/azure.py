"""Azure OpenAI image edits (`type = "azure"`).

Azure speaks OpenAI's multipart format, so the body is built by the openai adapter's `edit_form` and the
request is sent, and its answer or error read, by its `post_edit`; what differs lives here:

- the URL: deployment-scoped `{base}/openai/deployments/{deployment}/images/edits?api-version=…` by
  default, or the v1 API `{base}/openai/v1/images/edits` (model field = deployment name) when
  `api_version == "v1"` or the base URL already ends in `/openai/v1`;
- the `api-key` header;
- `response_format` is never sent (Azure answers Base64 only and refuses it for GPT image models);
- `output_format=webp` is refused here, before anything is sent: Azure produces PNG and JPEG only.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from imagegate.core.edits import EditJob, EditResult
from imagegate.core.errors import InvalidRequest
from imagegate.providers.http import UpstreamSession
from imagegate.providers.openai import edit_form, post_edit

DEFAULT_API_VERSION = "2025-04-01-preview"
_V1_SUFFIX = "/openai/v1"
_OUTPUT_FORMATS = frozenset({"png", "jpeg"})


class AzureProvider:
    """One Azure OpenAI resource; `deployments` maps a model id (public or upstream) to a deployment name."""

    def __init__(self, *, name: str, base_url: str, api_key: str, api_version: str = "",
                 deployments: Mapping[str, str] | None = None, timeout: float = 600.0) -> None:
        if not base_url:
            raise ValueError("an Azure provider needs base_url, e.g. https://<resource>.openai.azure.com")
        self._name = name
        self._base = base_url.rstrip("/")
        self._v1 = api_version == "v1" or self._base.endswith(_V1_SUFFIX)
        # v1 needs no api-version ("preview" opts into preview features); deployment routes require one.
        self._api_version = api_version if self._v1 else api_version or DEFAULT_API_VERSION
        self._deployments = dict(deployments or {})
        self._headers = {"api-key": api_key}
        self._session = UpstreamSession(timeout=timeout)

    def deployment(self, job: EditJob) -> str:
        """The deployment serving this job: configured for its model, else named like the upstream model."""
        return self._deployments.get(job.model) or self._deployments.get(job.upstream_model) \
            or job.upstream_model

    def url(self, deployment: str) -> str:
        if self._v1:
            root = self._base if self._base.endswith(_V1_SUFFIX) else self._base + _V1_SUFFIX
            query = "" if self._api_version in ("", "v1") else f"?api-version={quote(self._api_version)}"
            return f"{root}/images/edits{query}"
        return (f"{self._base}/openai/deployments/{quote(deployment, safe='')}/images/edits"
                f"?api-version={quote(self._api_version)}")

    async def edit(self, job: EditJob) -> EditResult:
        output_format = job.options.get("output_format", "png")
        if output_format not in _OUTPUT_FORMATS:
            raise InvalidRequest(f"output_format '{output_format}' is not available for '{job.model}' on "
                                 "this route: Azure produces png or jpeg only.", param="output_format",
                                 code="unsupported_output_format")
        deployment = self.deployment(job)
        form = edit_form(job, model=deployment if self._v1 else None, ask_b64=False)
        return await post_edit(self._session.get(), self.url(deployment), form, self._headers, job=job,
                               provider=self._name)

    async def aclose(self) -> None:
        await self._session.aclose()
