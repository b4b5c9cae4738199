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


def _refuse(param: str, why: str) -> InvalidImageURL:
    return InvalidImageURL(f"'{param}' is not an allowed image URL: {why}.", param=param)


def _check_characters(text: str, param: str) -> None:
    for ch in text:
        if ch == "\\":
            raise _refuse(param, "backslashes are not allowed")
        if ch == "#":
            raise _refuse(param, "a fragment ('#') is not allowed")
        if ch.isspace() or unicodedata.category(ch)[0] in "CZ":
            raise _refuse(param, "whitespace and control characters are not allowed")


def _raw_authority(text: str) -> str:
    rest = text.split("//", 1)[1] if "//" in text else ""
    return re.split(r"[/?#]", rest, maxsplit=1)[0]


def check_host(host: str, param: str, policy: AddressPolicy) -> None:
    """Refuse a host that is not a public DNS name or a public canonical IP literal."""
    if "%" in host:
        raise _refuse(param, "'%' is not allowed in the host")
    if ":" in host:  # yarl has already removed the brackets of an IPv6 literal
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise _refuse(param, "the host is not a valid IPv6 address") from None
        if not policy.allows(address):
            raise _refuse(param, "the address is not public")
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
            raise _refuse(param, "only dotted-decimal IPv4 addresses are accepted") from None
        if str(ipv4) != name:
            raise _refuse(param, "only dotted-decimal IPv4 addresses are accepted")
        if not policy.allows(ipv4):
            raise _refuse(param, "the address is not public")
        return
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise _refuse(param, "the host name is not valid")
    if len(labels) < 2:
        raise _refuse(param, "single-label host names are not allowed")
    if any(name == s or name.endswith("." + s) for s in BLOCKED_SUFFIXES):
        raise _refuse(param, "the host name is reserved for local use")


def check_url(url: URL, param: str, settings: FetchSettings, policy: AddressPolicy) -> URL:
    """Run the structural rules on a parsed URL and return it unchanged."""
    if url.scheme not in SCHEMES:
        raise _refuse(param, "only http and https URLs are accepted")
    if not url.absolute or not url.raw_host:
        raise _refuse(param, "the URL must be absolute and name a host")
    if url.raw_user is not None or url.raw_password is not None:
        raise _refuse(param, "credentials are not allowed in the URL")
    if url.raw_fragment:
        raise _refuse(param, "a fragment ('#') is not allowed")
    check_host(url.raw_host, param, policy)
    if url.port not in settings.allowed_ports:
        raise _refuse(param, "the port is not allowed")
    if len(str(url)) > settings.max_url_length:
        raise _refuse(param, f"URLs are limited to {settings.max_url_length} characters")
    return url


def _parse(text: str, param: str, settings: FetchSettings) -> URL:
    if len(text) > settings.max_url_length:
        raise _refuse(param, f"URLs are limited to {settings.max_url_length} characters")
    _check_characters(text, param)
    authority = _raw_authority(text)
    if "@" in authority:
        raise _refuse(param, "credentials are not allowed in the URL")
    if "%" in authority:
        raise _refuse(param, "'%' is not allowed in the host")
    try:
        return URL(text)
    except (ValueError, TypeError, UnicodeError):
        raise _refuse(param, "the URL cannot be parsed") from None


def parse_url(text: str, param: str, settings: FetchSettings, policy: AddressPolicy) -> URL:
    """Validate the client's URL string; the returned object is exactly what will be requested."""
    return check_url(_parse(text, param, settings), param, settings, policy)


def resolve_redirect(current: URL, location: str, param: str, settings: FetchSettings,
                     policy: AddressPolicy) -> URL:
    """Resolve a `Location` header against the current URL and run the full validation again."""
    target = current.join(_parse(location, param, settings))
    try:
        return check_url(target, param, settings, policy)
    except InvalidImageURL as exc:
        raise InvalidImageURL(f"'{param}' redirected to a URL that is not allowed: "
                              f"{exc.message.split(': ', 1)[-1]}", param=param) from None
