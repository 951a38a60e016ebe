"""Tests for the generic name registry."""

import pytest

from halbench.registry import Registry


@pytest.fixture
def reg() -> Registry:
    r: Registry = Registry("widget")
    for name in ("alpha", "alphabet", "beta", "gamma"):
        r.register(name)(name.upper())
    return r


def test_register_returns_target_and_get_finds_it(reg: Registry) -> None:
    obj = object()
    assert reg.register("delta")(obj) is obj
    assert reg.get("delta") is obj
    assert "delta" in reg and "epsilon" not in reg
    assert len(reg) == 5


def test_duplicate_name_is_rejected(reg: Registry) -> None:
    with pytest.raises(ValueError, match="widget 'alpha' is already registered"):
        reg.register("alpha")(1)


def test_unknown_name_lists_available_and_close_matches(reg: Registry) -> None:
    with pytest.raises(ValueError) as err:
        reg.get("alpah")
    message = str(err.value)
    assert message.startswith("unknown widget 'alpah'; available: alpha, alphabet, beta, gamma")
    assert "did you mean 'alpha'" in message
    assert "\n" not in message


def test_unknown_name_without_close_match_has_no_suggestion(reg: Registry) -> None:
    with pytest.raises(ValueError) as err:
        reg.get("zzzzzz")
    assert "did you mean" not in str(err.value)


def test_get_raises_value_error_not_key_error(reg: Registry) -> None:
    with pytest.raises(ValueError) as err:
        reg.get("nope")
    assert not isinstance(err.value, KeyError)
    assert err.value.__cause__ is None


def test_names_are_sorted_and_filtered_by_wildcard(reg: Registry) -> None:
    assert reg.names() == ["alpha", "alphabet", "beta", "gamma"]
    assert reg.names("alpha*") == ["alpha", "alphabet"]
    assert reg.names("*a") == ["alpha", "beta", "gamma"]
    assert reg.names("?eta") == ["beta"]
    assert reg.names("x*") == []


@pytest.mark.parametrize("bad", ["", " pad", "pad "])
def test_bad_names_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="widget name"):
        Registry("widget").register(bad)
