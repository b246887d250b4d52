"""Tenants' tokens and the failed-attempt limit (pure)."""

from __future__ import annotations

import pytest

from reel.tokens import DEV_TOKEN, DEV_TOKENS, BadTokens, FailureLimiter, Tokens, bearer, digest, new_token


def test_a_token_names_its_tenant_and_only_digests_are_configured() -> None:
    a, a2, b = new_token(), new_token(), new_token()
    tokens = Tokens.parse(f"acme:{digest(a)}, acme:{digest(a2)},beta:{digest(b)}")
    assert (tokens.tenant_of(a), tokens.tenant_of(a2), tokens.tenant_of(b)) == ("acme", "acme", "beta")
    assert tokens.tenant_of(a[:-1]) is None and tokens.tenant_of("") is None
    assert tokens.tenants == {"acme", "beta"}
    assert Tokens.parse(DEV_TOKENS).tenant_of(DEV_TOKEN) == "default"
    assert a not in f"acme:{digest(a)}"


def test_new_tokens_are_long_and_distinct() -> None:
    made = {new_token() for _ in range(100)}
    assert len(made) == 100 and all(len(t) >= 40 for t in made)


@pytest.mark.parametrize(
    "text", ["acme", f"acme:{'0' * 63}", f"Acme:{'0' * 64}", f"acme:{'g' * 64}", f"../x:{'0' * 64}"]
)
def test_a_bad_entry_is_refused_naming_it(text: str) -> None:
    with pytest.raises(BadTokens, match="entry 1"):
        Tokens.parse(text)


@pytest.mark.parametrize(
    "header,token",
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None), ("", None), (None, None)],
)
def test_only_a_bearer_header_gives_a_token(header: str | None, token: str | None) -> None:
    assert bearer(header) == token


def test_failures_past_the_limit_wait_for_the_window() -> None:
    limiter = FailureLimiter(limit=3, window_s=10)
    for t in (0.0, 1.0, 2.0):
        assert limiter.retry_after("a", t) == 0
        limiter.failed("a", t)
    assert limiter.retry_after("a", 3.0) == pytest.approx(7.0)  # until the first leaves the window
    assert limiter.retry_after("b", 3.0) == 0  # per client
    assert limiter.retry_after("a", 10.5) == 0  # one has left: one more try


def test_the_limiter_forgets_the_oldest_clients_first() -> None:
    limiter = FailureLimiter(limit=1, window_s=100, clients=2)
    for c in ("a", "b", "c"):
        limiter.failed(c, 0.0)
    assert list(limiter.failures) == ["b", "c"]
