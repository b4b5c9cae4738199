"""URL syntax: every case is refused before any DNS query or connect, with the reason it should have.

Each hostile case runs through the whole fetcher (fake resolver, tripwire armed) and asserts that
nothing was resolved and nothing was dialled; `why` pins the rule that refused it, so that a case
cannot pass by accident (say, refused for its port when it was meant to test its host).
"""

from __future__ import annotations

import pytest
from yarl import URL

from imagegate.core.errors import InvalidImageURL
from imagegate.fetch import AddressPolicy, FetchSettings
from imagegate.fetch.url import parse_url

from .conftest import Fetch, MakeFetcher
from .support import FakeResolver, Tripwire, refused

SCHEME = "only http and https"
ABSOLUTE = "must be absolute"
CREDENTIALS = "credentials"
FRAGMENT = "fragment"
CHARS = "whitespace and control"
BACKSLASH = "backslashes"
PERCENT = "'%' is not allowed in the host"
LEGACY = "only dotted-decimal"
NOT_PUBLIC = "not public"
RESERVED = "reserved for local use"
SINGLE = "single-label"
INVALID_NAME = "host name is not valid"
PORT = "port is not allowed"
PARSE = "cannot be parsed"

CASES = [
    # schemes and structure
    ("ftp://img.test/a.png", SCHEME), ("file:///etc/passwd", SCHEME), ("gopher://img.test:70/_x", SCHEME),
    ("javascript:alert(1)", SCHEME), ("ws://img.test/", SCHEME), ("dict://img.test:11211/stat", SCHEME),
    ("//img.test/a.png", SCHEME), ("img.test/a.png", SCHEME), ("", SCHEME), ("http:/img.test/a.png", ABSOLUTE),
    ("http:img.test", ABSOLUTE), ("http://", ABSOLUTE), ("http:///a.png", ABSOLUTE),
    # credentials and fragments
    ("http://user@img.test/a.png", CREDENTIALS), ("http://user:pass@img.test/a.png", CREDENTIALS),
    ("http://@img.test/a.png", CREDENTIALS), ("http://img.test@127.0.0.1/", CREDENTIALS),
    ("http://127.0.0.1:80@img.test/", CREDENTIALS), ("http://img.test/a.png#frag", FRAGMENT),
    ("http://img.test/#@127.0.0.1/", FRAGMENT),
    # whitespace, control characters, backslashes
    ("http://img.test/a b.png", CHARS), ("http://img\t.test/", CHARS), ("http://img.test/a\n.png", CHARS),
    ("http://img.test/a\r\nX-Injected: 1", CHARS), ("http://img.test/\x00", CHARS),
    ("http://img.test/\x7f", CHARS), (" http://img.test/a.png", CHARS), ("http://img.test/a\u3000.png", CHARS),
    ("http://img.test/\u00a0", CHARS), ("http://img\u200b.test/", CHARS), ("http://img.test/\u2028", CHARS),
    ("http://img.test\\@127.0.0.1/", BACKSLASH), ("http:\\\\img.test\\a.png", BACKSLASH),
    # percent-encoding in the host
    ("http://img%2etest/", PERCENT), ("http://%31%32%37.0.0.1/", PERCENT), ("http://[::1%25lo]/", PERCENT),
    ("http://img.test%40evil.test/", PERCENT),
    # legacy IPv4 spellings
    ("http://2130706433/", LEGACY), ("http://0x7f000001/", LEGACY), ("http://0x7f.0.0.1/", LEGACY),
    ("http://0177.0.0.1/", LEGACY), ("http://017700000001/", LEGACY), ("http://127.1/", LEGACY),
    ("http://127.0.1/", LEGACY), ("http://127.000.000.001/", LEGACY), ("http://0/", LEGACY),
    ("http://0x7f.1/", LEGACY), ("http://1.2.3.4.5/", LEGACY), ("http://8.8.8.08/", LEGACY),
    ("http://0x08.0x08.0x08.0x08/", LEGACY), ("http://4294967295/", LEGACY),
    # loopback, every spelling
    ("http://127.0.0.1/", NOT_PUBLIC), ("http://127.255.255.254/", NOT_PUBLIC), ("http://[::1]/", NOT_PUBLIC),
    ("http://[0:0:0:0:0:0:0:1]/", NOT_PUBLIC), ("http://[0000::1]/", NOT_PUBLIC),
    ("http://[::ffff:127.0.0.1]/", NOT_PUBLIC), ("http://[::ffff:7f00:1]/", NOT_PUBLIC),
    ("http://[::127.0.0.1]/", NOT_PUBLIC), ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", NOT_PUBLIC),
    ("http://127\u30020\u30020\u30021/", NOT_PUBLIC), ("http://127.0.0.1./", NOT_PUBLIC),
    ("http://0.0.0.0/", NOT_PUBLIC), ("http://[::]/", NOT_PUBLIC), ("http://localhost/", RESERVED),
    ("http://LOCALHOST/", RESERVED), ("http://localhost./", RESERVED), ("http://foo.localhost/", RESERVED),
    ("http://\u24dbocalhost/", RESERVED), ("http://localhost:80/", RESERVED),
    # the test origin, literally: public only to the injected test policy, never on a wrong port
    ("http://127.0.0.2:22/", PORT),
    # special-purpose IPv4 literals
    *[(f"http://{a}/", NOT_PUBLIC) for a in [
        "10.0.0.1", "100.64.0.1", "169.254.169.254", "172.16.0.1", "172.31.255.255", "192.0.0.1",
        "192.0.2.1", "192.88.99.1", "192.168.1.1", "198.18.0.1", "198.51.100.1", "203.0.113.1",
        "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "0.1.2.3"]],
    # special-purpose IPv6 literals and IPv4 embeddings
    *[(f"http://[{a}]/", NOT_PUBLIC) for a in [
        "fe80::1", "fc00::1", "fd00::1", "ff02::1", "2001:db8::1", "2002:7f00:1::",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2", "64:ff9b::7f00:1", "64:ff9b:1::1", "::ffff:10.0.0.1",
        "::ffff:169.254.169.254", "fec0::1", "100::1", "3fff::1", "::ffff:127.0.0.2"]],
    # names that are never public
    ("http://intranet/", RESERVED), ("http://fileserver/a.png", SINGLE),
    ("http://metadata/computeMetadata/v1/", SINGLE), ("http://x.internal/", RESERVED),
    ("http://metadata.google.internal/computeMetadata/v1/", RESERVED), ("http://printer.local/", RESERVED),
    ("http://a.localdomain/", RESERVED), ("http://router.home.arpa/", RESERVED), ("http://x.onion/", RESERVED),
    ("http://img.test../", INVALID_NAME), ("http://-img.test/", INVALID_NAME), ("http://img!.test/", INVALID_NAME),
    (f"http://{'a' * 64}.test/", INVALID_NAME), (f"http://{'a.' * 130}test/", INVALID_NAME),
    # ports
    ("http://img.test:8080/", PORT), ("http://img.test:22/", PORT), ("http://img.test:6379/", PORT),
    ("http://img.test:25/", PORT), ("http://img.test:0/", PORT), ("https://img.test:65535/", PORT),
    ("http://img.test:99999/", PARSE),
    # length
    ("http://img.test/" + "a" * 8200, "8192 characters"),
]


@pytest.mark.parametrize(("url", "why"), CASES)
async def test_refused_before_any_lookup_or_connect(url: str, why: str, make_fetcher: MakeFetcher,
                                                    fetch: Fetch, tripwire: Tripwire,
                                                    resolver: FakeResolver) -> None:
    fetcher = make_fetcher(allowed_ports=(80, 443))
    error = await refused(fetch, "https://img.test/ok.png", url, using=fetcher)
    assert isinstance(error, InvalidImageURL) and error.code == "invalid_image_url"
    assert error.param == "image_urls[1]"
    assert why in error.message, error.message
    assert resolver.queries == [] and tripwire.dialled == []  # not even the valid first URL was fetched


POLICY = AddressPolicy()
SETTINGS = FetchSettings()


@pytest.mark.parametrize(("text", "sent"), [
    ("HTTP://IMG.EXAMPLE/a.png", "http://img.example/a.png"),
    ("https://img.example:443/a.png", "https://img.example/a.png"),
    ("http://b\u00fccher.example/", "http://xn--bcher-kva.example/"),
    ("http://img.example./a.png", "http://img.example./a.png"),
    ("http://8.8.8.8/a.png", "http://8.8.8.8/a.png"),
    ("http://[2606:4700:4700::1111]/a.png", "http://[2606:4700:4700::1111]/a.png"),
    ("http://img.example/\u00f6?q=\u00e4&x=%2F", "http://img.example/%C3%B6?q=%C3%A4&x=/"),
    ("http://cdn_1.img.example/a.png", "http://cdn_1.img.example/a.png"),
])
def test_public_urls_are_parsed_once_into_what_is_sent(text: str, sent: str) -> None:
    url = parse_url(text, "image_url", SETTINGS, POLICY)
    assert isinstance(url, URL) and str(url) == sent


def test_the_operator_allow_list_admits_literals_too() -> None:
    url = parse_url("http://10.1.2.3/a.png", "image_url", SETTINGS, AddressPolicy(["10.1.2.0/24"]))
    assert url.raw_host == "10.1.2.3"


def test_the_allowed_ports_come_from_settings() -> None:
    settings = FetchSettings(allowed_ports=(8443,))
    assert parse_url("https://img.example:8443/", "image_url", settings, POLICY).port == 8443
    with pytest.raises(InvalidImageURL):
        parse_url("https://img.example/", "image_url", settings, POLICY)
