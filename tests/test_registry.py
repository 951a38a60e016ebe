"""Tests for the generic name registry."""

import inspect

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


class Widget:
    def __init__(self, size: int, *, colour: str = "red", weight: float = 1.0) -> None:
        self.size, self.colour, self.weight = size, colour, weight


class SmallWidget(Widget):
    def __init__(self, size: int, *, shrink: int = 2, **rest: object) -> None:
        super().__init__(size // shrink, **rest)  # type: ignore[arg-type]


def make_gadget(*, size: int, sharp: bool = False) -> tuple[int, bool]:
    return size, sharp


@pytest.fixture
def factories() -> Registry:
    r: Registry = Registry("widget")
    r.register("widget")(Widget)
    r.register("small")(SmallWidget)
    r.register("gadget")(make_gadget)
    return r


def test_parameters_walk_constructors_that_forward_kwargs(factories: Registry) -> None:
    assert factories.parameters("small") == {
        "size": inspect.Parameter.empty, "shrink": 2, "colour": "red", "weight": 1.0
    }  # fmt: skip
    assert factories.parameters("gadget") == {"size": inspect.Parameter.empty, "sharp": False}


def test_build_passes_sizes_and_params(factories: Registry) -> None:
    small = factories.build("small", {"size": 8}, {"colour": "blue", "shrink": 4})
    assert (small.size, small.colour) == (2, "blue")
    assert factories.build("gadget", {"size": 3}, {"sharp": True}) == (3, True)


def test_build_names_an_unknown_parameter_with_a_suggestion(factories: Registry) -> None:
    with pytest.raises(ValueError) as err:
        factories.build("small", {"size": 8}, {"color": "blue"})
    message = str(err.value)
    assert message.startswith("widget 'small': unknown parameter 'color'; expected one of: ")
    assert "did you mean 'colour'?" in message and "\n" not in message
    # a size the caller sets is not a parameter the user may give
    with pytest.raises(ValueError, match="unknown parameter 'size'; expected one of: sharp$"):
        factories.build("gadget", {"size": 3}, {"size": 4})
