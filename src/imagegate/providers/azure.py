"""Azure OpenAI images (`type = "azure"`): edits and generations, streamed or not.

Azure speaks OpenAI's format, so this is the openai adapter with Azure's differences:

- the URL: deployment-scoped `{base}/openai/deployments/{deployment}/images/{edits|generations}?api-version=…`
  by default, or the v1 API `{base}/openai/v1/images/…` (model field = deployment name) when
  `api_version == "v1"` or the base URL already ends in `/openai/v1`;
- the `api-key` header;
- `response_format` is never sent to GPT image deployments (Azure answers Base64 only and refuses it for
  them); DALL·E deployments are asked for Base64 as on OpenAI;
- `output_format=webp` is refused here, before anything is sent: Azure produces PNG and JPEG only;
- variations do not exist on Azure: the catalog routes them to `openai` providers only.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from imagegate.core.errors import InvalidRequest
from imagegate.core.jobs import ImageJob
from imagegate.core.ports import ResultFetcher
from imagegate.providers.openai import PATHS, OpenAIProvider, WireRequest, images_request

DEFAULT_API_VERSION = "2025-04-01-preview"
_V1_SUFFIX = "/openai/v1"
_OUTPUT_FORMATS = frozenset({"png", "jpeg"})
_DALL_E = ("dall-e-",)


class AzureProvider(OpenAIProvider):
    """One Azure OpenAI resource; `deployments` maps a model id (public or upstream) to a deployment name."""

    def __init__(self, *, name: str, base_url: str, api_key: str, api_version: str = "",
                 deployments: Mapping[str, str] | None = None, timeout: float = 600.0,
                 results: ResultFetcher | None = None) -> None:
        if not base_url:
            raise ValueError("an Azure provider needs base_url, e.g. https://<resource>.openai.azure.com")
        super().__init__(name=name, base_url=base_url, api_key="", timeout=timeout, results=results)
        self._v1 = api_version == "v1" or self._base.endswith(_V1_SUFFIX)
        # v1 needs no api-version ("preview" opts into preview features); deployment routes require one.
        self._api_version = api_version if self._v1 else api_version or DEFAULT_API_VERSION
        self._deployments = dict(deployments or {})
        self._headers = {"api-key": api_key}

    def deployment(self, job: ImageJob) -> str:
        """The deployment serving this job: configured for its model, else named like the upstream model."""
        return self._deployments.get(job.model) or self._deployments.get(job.upstream_model) \
            or job.upstream_model

    def url(self, job: ImageJob) -> str:
        path = PATHS[job.operation]
        if self._v1:
            root = self._base if self._base.endswith(_V1_SUFFIX) else self._base + _V1_SUFFIX
            query = "" if self._api_version in ("", "v1") else f"?api-version={quote(self._api_version)}"
            return f"{root}{path}{query}"
        return (f"{self._base}/openai/deployments/{quote(self.deployment(job), safe='')}{path}"
                f"?api-version={quote(self._api_version)}")

    def request(self, job: ImageJob, *, stream: bool = False) -> WireRequest:
        return images_request(job, model=self.deployment(job) if self._v1 else None,
                              ask_b64=job.upstream_model.startswith(_DALL_E), stream=stream)

    def check(self, job: ImageJob) -> None:
        output_format = job.options.get("output_format", "png")
        if output_format not in _OUTPUT_FORMATS:
            raise InvalidRequest(f"output_format '{output_format}' is not available for '{job.model}' on "
                                 "this route: Azure produces png or jpeg only.", param="output_format",
                                 code="unsupported_output_format")
