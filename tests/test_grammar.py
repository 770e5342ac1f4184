from fractions import Fraction

import pytest

from lrisc_sim.grammar import GridError, cbr_label, parse_cbr, parse_snr


def test_snr_range_inclusive():
    assert parse_snr("0:15:5") == [0, 5, 10, 15]
    assert parse_snr("0:2") == [0, 1, 2]
    assert parse_snr("-5:5:2.5") == [-5, -2.5, 0, 2.5, 5]


def test_snr_lists_and_single():
    assert parse_snr("0,3,7") == [0, 3, 7]
    assert parse_snr("10") == [10]
    assert parse_snr("0:10:5,12") == [0, 5, 10, 12]
    assert parse_snr("5,5") == [5]


@pytest.mark.parametrize("bad", ["", "a", "0:15:0", "15:0:5", "0::5", "0:1:2:3", "nan", "0:15:-5", "1e9", "inf"])
def test_snr_bad_strings(bad):
    with pytest.raises(GridError) as e:
        parse_snr(bad)
    assert "accepted forms" in str(e.value) or "within" in str(e.value) or "points" in str(e.value)
    assert "\n" not in str(e.value)


def test_cbr_fractions_and_decimals():
    assert parse_cbr("1/48") == [Fraction(1, 48)]
    assert parse_cbr("1/64, 1/16") == [Fraction(1, 64), Fraction(1, 16)]
    assert parse_cbr("0.02") == [0.02]
    assert cbr_label(Fraction(1, 48)) == "1/48"
    assert cbr_label(1 / 48) == "1/48"
    assert cbr_label(0.0234) == "0.0234"


@pytest.mark.parametrize("bad", ["", "1/0", "0", "-1/48", "2", "x/48", "1/4.5", "1//48", "abc"])
def test_cbr_bad_strings(bad):
    with pytest.raises(GridError) as e:
        parse_cbr(bad)
    assert "accepted forms" in str(e.value)
