"""Where the fetcher may connect: DNS answers, rebinding, redirects and ports.

Every refused case asserts what was dialled: nothing at all, or only the "public" test origin.
"""

from __future__ import annotations

import pytest

from imagegate.core.errors import ImageFetchFailed, InvalidImageURL

from .conftest import Fetch, MakeFetcher
from .support import INTERNAL, PNG, PUBLIC, FakeResolver, Origin, Tripwire, redirect, refused, reply

SPECIAL = ["127.0.0.1", "127.0.0.3", "10.0.0.1", "100.64.0.1", "169.254.169.254", "172.16.0.1",
           "192.0.0.8", "192.0.2.1", "192.88.99.1", "192.168.1.1", "198.18.0.1", "198.51.100.1",
           "203.0.113.1", "224.0.0.1", "240.0.0.1", "255.255.255.255", "0.0.0.0", "::1", "::",
           f"::ffff:{PUBLIC}", f"::{PUBLIC}", "fe80::1", "fd00::1", "ff02::1", "2001:db8::1", "2002:7f00:2::1",
           "2001::7f00:2", "64:ff9b::7f00:2", "64:ff9b:1::7f00:2"]


@pytest.mark.parametrize("address", SPECIAL)
async def test_a_name_resolving_to_a_special_range_is_refused(address: str, origin: Origin, fetch: Fetch,
                                                              resolver: FakeResolver, tripwire: Tripwire) -> None:
    resolver.add("evil.test", [address])
    error = await refused(fetch, f"http://evil.test:{origin.port}/a.png")
    assert isinstance(error, InvalidImageURL) and error.param == "image_urls[0]"
    assert address not in error.message and "resolv" not in error.message.split(":")[0]
    assert resolver.queries == ["evil.test"] and tripwire.dialled == []


@pytest.mark.parametrize("answer", [[PUBLIC, "10.0.0.1"], ["127.0.0.1", PUBLIC], [PUBLIC, "::1"],
                                    [PUBLIC, PUBLIC, "169.254.169.254"], [PUBLIC, "fd00::1"]])
async def test_a_mixed_answer_is_refused_whole(answer: list[str], origin: Origin, fetch: Fetch,
                                               resolver: FakeResolver, tripwire: Tripwire) -> None:
    resolver.add("mixed.test", answer)
    error = await refused(fetch, f"http://mixed.test:{origin.port}/a.png")
    assert isinstance(error, InvalidImageURL)
    assert tripwire.dialled == []  # not even the public address in the answer


@pytest.mark.parametrize("name", ["empty.test", "nxdomain.test"])
async def test_names_that_do_not_resolve_fail_cleanly(name: str, origin: Origin, fetch: Fetch,
                                                      tripwire: Tripwire) -> None:
    error = await refused(fetch, f"http://{name}:{origin.port}/a.png")
    assert isinstance(error, ImageFetchFailed) and "could not be resolved" in error.message
    assert tripwire.dialled == []


async def test_rebinding_the_address_dialled_is_the_address_checked(
        origin: Origin, make_fetcher: MakeFetcher, fetch: Fetch, resolver: FakeResolver,
        tripwire: Tripwire, internal: Origin) -> None:
    """First answer public, every later one private: one lookup per connection, and it is what is dialled."""
    origin.route("/a.png", reply(PNG))
    resolver.add("rebind.test", [[PUBLIC], [INTERNAL], ["10.0.0.1"]])
    url = f"http://rebind.test:{origin.port}/a.png"
    assert len(await fetch(url)) == 1
    assert resolver.queries == ["rebind.test"]
    # a second fetcher (no DNS cache) sees the rebound answer and refuses it
    error = await refused(fetch, url, using=make_fetcher())
    assert isinstance(error, InvalidImageURL)
    assert set(tripwire.dialled) == {(PUBLIC, origin.port)} and len(origin.hits()) == 1


async def test_rebinding_between_redirect_hops_is_caught(origin: Origin, fetch: Fetch, resolver: FakeResolver,
                                                         tripwire: Tripwire, internal: Origin) -> None:
    resolver.add("flip.test", [[PUBLIC], [INTERNAL]])
    origin.route("/start", redirect(f"http://flip2.test:{origin.port}/a.png"))
    resolver.add("flip2.test", [INTERNAL])
    error = await refused(fetch, f"http://flip.test:{origin.port}/start")
    assert isinstance(error, InvalidImageURL)
    assert tripwire.dialled == [(PUBLIC, origin.port)]


def _targets(port: int) -> list[tuple[str, type[Exception]]]:
    return [
        (f"http://127.0.0.1:{port}/a.png", InvalidImageURL),
        (f"http://{INTERNAL}:{port}/a.png", InvalidImageURL),
        (f"http://[::1]:{port}/a.png", InvalidImageURL),
        (f"http://[::ffff:{INTERNAL}]:{port}/a.png", InvalidImageURL),
        (f"http://169.254.169.254:{port}/latest/meta-data/", InvalidImageURL),
        (f"http://10.0.0.1:{port}/", InvalidImageURL),
        (f"http://2130706431:{port}/", InvalidImageURL),
        (f"http://localhost:{port}/", InvalidImageURL),
        (f"http://metadata.google.internal:{port}/", InvalidImageURL),
        (f"http://private.test:{port}/a.png", InvalidImageURL),
        (f"http://internal.test:{port}/a.png", InvalidImageURL),
        (f"http://mixed.test:{port}/a.png", InvalidImageURL),
        (f"//{INTERNAL}:{port}/a.png", InvalidImageURL),
        ("file:///etc/passwd", InvalidImageURL),
        (f"ftp://img.test:{port}/a.png", InvalidImageURL),
        ("gopher://img.test/_x", InvalidImageURL),
        ("data:image/png;base64,iVBORw0KGgo=", InvalidImageURL),
        ("javascript:alert(1)", InvalidImageURL),
        (f"http://img.test:{port + 1}/a.png", InvalidImageURL),
        (f"http://user:pw@img.test:{port}/a.png", InvalidImageURL),
        (f"http://img.test:{port}/a.png#x", InvalidImageURL),
        (f"http://img.test:{port}\\@{INTERNAL}/", InvalidImageURL),
        (f"http://img.test:{port}/a b.png", InvalidImageURL),
    ]


@pytest.mark.parametrize("index", range(23))
async def test_redirects_to_forbidden_targets_are_refused(index: int, origin: Origin, fetch: Fetch,
                                                          tripwire: Tripwire, internal: Origin) -> None:
    target, kind = _targets(origin.port)[index]
    origin.route("/r", redirect(target))
    error = await refused(fetch, origin.url("/r"))
    assert isinstance(error, kind) and error.param == "image_urls[0]"
    assert "redirected" in error.message or "address that is not allowed" in error.message
    assert tripwire.dialled == [(PUBLIC, origin.port)]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_each_redirect_status_is_followed_by_hand(status: int, origin: Origin, fetch: Fetch) -> None:
    origin.route("/r", redirect("/a.png", status=status))
    origin.route("/a.png", reply(PNG))
    assert (await fetch(origin.url("/r")))[0].info.format == "png"
    assert [r.path for r in origin.requests] == ["/r", "/a.png"]
    assert all(r.method == "GET" for r in origin.requests)


async def test_three_redirects_are_allowed_and_a_fourth_is_refused(origin: Origin, fetch: Fetch) -> None:
    for i in range(4):
        origin.route(f"/hop{i}", redirect(f"http://img.test:{origin.port}/hop{i + 1}"))
    origin.route("/hop3", reply(PNG))
    assert len(await fetch(origin.url("/hop0"))) == 1
    origin.route("/hop3", redirect("/hop4"))
    origin.route("/hop4", reply(PNG))
    origin.requests.clear()
    error = await refused(fetch, origin.url("/hop0"))
    assert isinstance(error, ImageFetchFailed) and "more than 3" in error.message
    assert [r.path for r in origin.requests] == ["/hop0", "/hop1", "/hop2", "/hop3"]  # /hop4 never asked


async def test_a_redirect_loop_ends_at_the_limit(origin: Origin, fetch: Fetch) -> None:
    origin.route("/loop", redirect("/loop"))
    assert isinstance(await refused(fetch, origin.url("/loop")), ImageFetchFailed)
    assert len(origin.requests) == 4


@pytest.mark.parametrize("handler", [reply(b"", 302, content_type="text/plain"),
                                     reply(b"", 300, [("Location", "/a.png")]),
                                     reply(b"", 304, [("Location", "/a.png")]),
                                     reply(b"", 305, [("Location", "/a.png")]),
                                     redirect("/a.png", headers=[("Location", "/b.png")])])
async def test_odd_redirects_fail(handler: object, origin: Origin, fetch: Fetch) -> None:
    origin.route("/r", handler)  # type: ignore[arg-type]
    origin.route("/a.png", reply(PNG))
    assert isinstance(await refused(fetch, origin.url("/r")), ImageFetchFailed)
    assert origin.hits("/a.png") == []


async def test_cookies_set_by_a_redirect_are_not_sent_back(origin: Origin, fetch: Fetch) -> None:
    origin.route("/r", redirect("/a.png", headers=[("Set-Cookie", "session=stolen; Path=/")]))
    origin.route("/a.png", reply(PNG))
    await fetch(origin.url("/r"))
    assert all("cookie" not in r.headers for r in origin.requests)


async def test_a_port_outside_the_allowed_list_is_never_dialled(origin: Origin, fetch: Fetch,
                                                                tripwire: Tripwire) -> None:
    other = await Origin(PUBLIC).start()  # a real listener on the same "public" host, other port
    try:
        other.route("/a.png", reply(PNG))
        for url in (other.url("/a.png"), f"http://img.test:{other.port}/a.png"):
            error = await refused(fetch, url)
            assert isinstance(error, InvalidImageURL) and "port" in error.message
        assert tripwire.dialled == [] and other.requests == []
    finally:
        await other.stop()


async def test_the_tripwire_itself_catches_a_policy_that_lets_a_private_address_through(
        origin: Origin, make_fetcher: MakeFetcher, fetch: Fetch, tripwire: Tripwire) -> None:
    """Meta-test: with a (deliberately wrong) policy that allows 10/8, the connect is stopped by the
    tripwire before any packet, and recorded; this is what would fail every other test."""
    from imagegate.fetch import AddressPolicy

    wrong = make_fetcher(policy=AddressPolicy(["10.0.0.0/8", f"{PUBLIC}/32"]))
    error = await refused(fetch, f"http://private.test:{origin.port}/a.png", using=wrong)
    assert isinstance(error, ImageFetchFailed)
    assert tripwire.dialled == [("10.0.0.1", origin.port)]
    assert tripwire.violations == [f"connect to 10.0.0.1:{origin.port}"]
    tripwire.violations.clear()
