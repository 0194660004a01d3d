"""The token reader: from the variable or a mounted file, refusals that name the
variable and never the value."""

from __future__ import annotations

from pathlib import Path

import pytest
from wma_wire.auth import TokenError, read_token


def test_no_variable_means_the_door_is_open() -> None:
    assert read_token({}, "WMA_GATEWAY_TOKEN") is None


def test_the_token_comes_from_the_variable() -> None:
    assert read_token({"WMA_GATEWAY_TOKEN": "abc.DEF-123"}, "WMA_GATEWAY_TOKEN") == "abc.DEF-123"


def test_the_token_comes_from_a_mounted_file_without_its_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-a-secret\n")
    env = {"WMA_GATEWAY_TOKEN_FILE": str(secret)}
    assert read_token(env, "WMA_GATEWAY_TOKEN") == "from-a-secret"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"T": ""}, "T: set but empty"),
        ({"T": "has a space-hunter2"}, "T: must be"),
        ({"T": "x", "T_FILE": "/nowhere"}, "T: set T or T_FILE, not both"),
        ({"T_FILE": "/nowhere/at/all"}, "T_FILE: cannot read /nowhere/at/all"),
    ],
)
def test_an_unusable_token_is_refused_naming_the_variable_not_the_value(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(TokenError) as caught:
        read_token(env, "T")
    assert named in caught.value.message
    assert "hunter2" not in caught.value.message


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("\n")
    with pytest.raises(TokenError, match="T_FILE: set but empty"):
        read_token({"T_FILE": str(secret)}, "T")
