"""Budget durations and periods (SPEC §8): fixed units from the anchor, calendar months."""
import datetime as dt

import pytest

from deltallm.errors import InvalidRequest
from deltallm.governance.durations import add_months, parse_duration, period

A = dt.datetime(2026, 1, 31, 10, 0, 0)


@pytest.mark.parametrize("text,expected", [("30s", (30, "s")), ("15m", (15, "m")), ("1h", (1, "h")),
                                           ("1d", (1, "d")), ("30d", (30, "d")), ("1mo", (1, "mo")),
                                           (" 2mo ", (2, "mo"))])
def test_parse(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0d", "1w", "1 month", "-1d", "1.5h", None])
def test_parse_rejects_with_the_accepted_units(text):
    with pytest.raises(InvalidRequest) as info:
        parse_duration(text)
    assert "<N>mo" in info.value.message and info.value.param == "budget_duration"


def test_fixed_periods_follow_each_other_from_the_anchor():
    assert period(A, "1h", A) == (A, A + dt.timedelta(hours=1))
    now = A + dt.timedelta(hours=5, minutes=59, seconds=59)
    assert period(A, "1h", now) == (A + dt.timedelta(hours=5), A + dt.timedelta(hours=6))
    assert period(A, "30s", A + dt.timedelta(seconds=30)) == (A + dt.timedelta(seconds=30),
                                                            A + dt.timedelta(seconds=60))
    assert period(A, "30d", A + dt.timedelta(days=45))[0] == A + dt.timedelta(days=30)


def test_calendar_months_clamp_to_short_months_and_come_back_to_the_anchor_day():
    assert add_months(A, 1) == dt.datetime(2026, 2, 28, 10)
    assert period(A, "1mo", dt.datetime(2026, 2, 15)) == (A, dt.datetime(2026, 2, 28, 10))
    day = dt.datetime
    assert period(A, "1mo", day(2026, 3, 1)) == (day(2026, 2, 28, 10), day(2026, 3, 31, 10))
    assert period(A, "1mo", day(2026, 3, 31, 10)) == (day(2026, 3, 31, 10), day(2026, 4, 30, 10))
    assert period(A, "2mo", day(2027, 1, 1)) == (day(2026, 11, 30, 10), day(2027, 1, 31, 10))
    assert period(A, "1mo", dt.datetime(2026, 1, 31, 9)) == (A, dt.datetime(2026, 2, 28, 10))


def test_without_a_duration_spend_never_resets():
    assert period(A, None, A + dt.timedelta(days=400)) == (A, None)
