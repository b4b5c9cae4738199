"""Fetching user-supplied image URLs without becoming an SSRF proxy (rules: remote-urls.md)."""

from imagegate.fetch.fetcher import SafeFetcher
from imagegate.fetch.policy import AddressPolicy, FetchSettings
from imagegate.fetch.resolver import BlockedAddress, PolicyResolver

__all__ = ["AddressPolicy", "BlockedAddress", "FetchSettings", "PolicyResolver", "SafeFetcher"]
