"""The one rule for hiding secrets in settings shown to people (hotreload.masking)."""

from __future__ import annotations

import pytest

from hotreload.masking import MASK, is_secret_key, mask_secrets


@pytest.mark.parametrize("key", [
    "password", "db.password", "DB_PASSWORD", "dbPassword", "smtp.passwd", "pwd", "apiKey",
    "api_key", "stripe.api-key", "stripe.secret_key", "client_secret", "secrets", "token",
    "auth_token", "github.tokens", "PrivateKey", "signing_key", "HMACKey", "aws.access_key_id",
    "credentials", "authorization", "oauth.client.secret", "max_tokens",
])
def test_secret_looking_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", [
    "host", "db.host", "author", "passenger", "bypass", "cache_key", "keys", "tokenizer",
    "primary_key", "keyboard", "feature_search", "db.pool_size",
])
def test_ordinary_keys(key: str) -> None:
    assert not is_secret_key(key)


def test_mask_secrets_hides_whole_subtrees_and_url_passwords() -> None:
    tree = {
        "db": {"url": "postgresql://app:pw@db:5432/app", "dsn": "host=db password=pw",
               "password": "pw", "pool_size": 10},
        "secrets": {"a": 1, "b": [1, 2]},
        "mirrors": ["redis://:pw@cache:6379/0", "plain text", 3],
        "note": "see https://example.invalid/docs",
    }
    masked = mask_secrets(tree)
    assert masked == {
        "db": {"url": "postgresql://app:***@db:5432/app", "dsn": "host=db password=***",
               "password": MASK, "pool_size": 10},
        "secrets": MASK,
        "mirrors": ["redis://:***@cache:6379/0", "plain text", 3],
        "note": "see https://example.invalid/docs",
    }
    assert "pw" not in str(masked).replace("pool_size", "")
    assert tree["db"]["password"] == "pw"  # a copy: the input is untouched
