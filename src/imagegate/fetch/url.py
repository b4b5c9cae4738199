"""URL syntax: refused early, parsed once with yarl (aiohttp's own parser), sent exactly as validated.

`parse_url` turns the client's string into the `yarl.URL` object the fetcher sends; `resolve_redirect`
does the same for a `Location` header against the current URL. Both run the full rule set, including the
address policy for IP-literal hosts (which never reach the resolver). Messages name the parameter and
never echo an address.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

from yarl import URL

from imagegate.core.errors import InvalidImageURL
from imagegate.fetch.policy import AddressPolicy, FetchSettings

SCHEMES = frozenset({"http", "https"})

# Names that never denote a public host: RFC 6761/6762/8375/9476 special-use names, ICANN's private-use
# `.internal`, and TLDs ICANN will never delegate because of name collisions.
BLOCKED_SUFFIXES = ("localhost", "local", "internal", "localdomain", "home.arpa", "invalid", "onion",
                    "alt", "lan", "intranet", "corp", "home", "private")

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class Refused(ValueError):
    """A rule the URL breaks; the public functions turn it into InvalidImageURL naming the param."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


_BAD_ASCII = re.compile(r"[\x00-\x20\x7f\\#]")


def _check_characters(text: str) -> None:
    if text.isascii() and not _BAD_ASCII.search(text):
        return
    for ch in text:
        if ch == "\\":
            raise Refused("backslashes are not allowed")
        if ch == "#":
            raise Refused("a fragment ('#') is not allowed")
        if ch.isspace() or unicodedata.category(ch)[0] in "CZ":
            raise Refused("whitespace and control characters are not allowed")


_AUTHORITY = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//([^/?#]*)")


def _raw_authority(text: str) -> str:
    match = _AUTHORITY.match(text)
    return match.group(1) if match else ""


def check_host(host: str, policy: AddressPolicy) -> None:
    """Refuse a host that is not a public DNS name or a public canonical IP literal."""
    if "%" in host:
        raise Refused("'%' is not allowed in the host")
    if ":" in host:  # yarl has already removed the brackets of an IPv6 literal
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise Refused("the host is not a valid IPv6 address") from None
        if not policy.allows(address):
            raise Refused("the address is not public")
        return
    name = host.lower()
    if name.endswith("."):
        name = name[:-1]
    labels = name.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        # A numeric last label makes the host an IPv4 address to WHATWG parsers. Only the canonical
        # dotted quad is accepted; 2130706433, 0x7f.1, 0177.0.0.1 and 127.1 are refused.
        try:
            ipv4 = ipaddress.IPv4Address(name)
        except ValueError:
            raise Refused("only dotted-decimal IPv4 addresses are accepted") from None
        if str(ipv4) != name:
            raise Refused("only dotted-decimal IPv4 addresses are accepted")
        if not policy.allows(ipv4):
            raise Refused("the address is not public")
        return
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise Refused("the host name is not valid")
    if any(name == s or name.endswith("." + s) for s in BLOCKED_SUFFIXES):
        raise Refused("the host name is reserved for local use")
    if len(labels) < 2:
        raise Refused("single-label host names are not allowed")


def check_url(url: URL, settings: FetchSettings, policy: AddressPolicy) -> URL:
    """Run the structural rules on a parsed URL and return it unchanged. Raises Refused."""
    if url.scheme not in SCHEMES:
        raise Refused("only http and https URLs are accepted")
    if not url.absolute or not url.raw_host:
        raise Refused("the URL must be absolute and name a host")
    if url.raw_user is not None or url.raw_password is not None:
        raise Refused("credentials are not allowed in the URL")
    if url.raw_fragment:
        raise Refused("a fragment ('#') is not allowed")
    check_host(url.raw_host, policy)
    if url.port not in settings.allowed_ports:
        raise Refused("the port is not allowed")
    if len(str(url)) > settings.max_url_length:
        raise Refused(f"URLs are limited to {settings.max_url_length} characters")
    return url


def _parse(text: str, settings: FetchSettings) -> URL:
    if len(text) > settings.max_url_length:
        raise Refused(f"URLs are limited to {settings.max_url_length} characters")
    _check_characters(text)
    authority = _raw_authority(text)
    if "@" in authority:
        raise Refused("credentials are not allowed in the URL")
    if "%" in authority:
        raise Refused("'%' is not allowed in the host")
    try:
        return URL(text)
    except (ValueError, TypeError, UnicodeError):
        raise Refused("the URL cannot be parsed") from None


def parse_url(text: str, param: str, settings: FetchSettings, policy: AddressPolicy) -> URL:
    """Validate the client's URL string; the returned object is exactly what will be requested."""
    try:
        return check_url(_parse(text, settings), settings, policy)
    except Refused as exc:
        raise InvalidImageURL(f"'{param}' is not an allowed image URL: {exc.why}.", param=param) from None


def resolve_redirect(current: URL, location: str, param: str, settings: FetchSettings,
                     policy: AddressPolicy) -> URL:
    """Resolve a `Location` header against the current URL and run the full validation again."""
    try:
        return check_url(current.join(_parse(location, settings)), settings, policy)
    except Refused as exc:
        raise InvalidImageURL(f"'{param}' redirected to a URL that is not allowed: {exc.why}.",
                              param=param) from None
