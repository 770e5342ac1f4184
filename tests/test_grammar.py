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


def test_one_cbr_follows_the_list_rules():
    from lrisc_sim.grammar import parse_one_cbr

    assert parse_one_cbr("1/48") == Fraction(1, 48) and isinstance(parse_one_cbr("1/48"), Fraction)
    assert parse_one_cbr(" 2/96 ") == Fraction(1, 48)
    assert parse_one_cbr("0.02") == 0.02 and isinstance(parse_one_cbr("0.02"), float)
    assert parse_one_cbr(Fraction(1, 16)) == Fraction(1, 16)
    assert parse_one_cbr(1 / 48) == 1 / 48 and parse_one_cbr(1) == 1.0
    for bad in ["", "1/48,1/16", "x/48", "1/0", "0", "-1/48", "nan", "inf", 2.0, Fraction(3, 2), True]:
        with pytest.raises(GridError) as e:
            parse_one_cbr(bad)
        assert "accepted forms" in str(e.value) and "\n" not in str(e.value)


def test_cbr_fraction_snaps_decimals_as_deepjscc_needs():
    from lrisc_sim.grammar import cbr_fraction

    assert cbr_fraction("1/48") == Fraction(1, 48)
    assert cbr_fraction("0.0208333") == Fraction(1, 48)  # a rounded decimal snaps to the fraction it stands for
    assert cbr_fraction(1 / 24) == Fraction(1, 24) and cbr_fraction(Fraction(1, 24)) == Fraction(1, 24)
    assert cbr_fraction("0.25") == Fraction(1, 4) and cbr_fraction(1) == Fraction(1)
    assert cbr_fraction("1/20000", max_denominator=100000) == Fraction(1, 20000)
    with pytest.raises(GridError, match="bad CBR 'one/48'"):
        cbr_fraction("one/48")
    with pytest.raises(GridError, match="smallest CBR"):
        cbr_fraction("1/30000")  # nearer to 0 than to 1/10000
