"""Budget durations (`30s`, `15m`, `1h`, `1d`, `1mo`) and the budget period containing a moment."""
import calendar
import datetime
import functools
import re

from deltallm.errors import InvalidRequest

_DURATION = re.compile(r"^\s*(\d+)\s*(mo|s|m|h|d)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@functools.lru_cache(maxsize=256)
def parse_duration(text):
    """`(count, unit)` for a budget duration; raises InvalidRequest naming the accepted units."""
    match = _DURATION.match(str(text or ""))
    if not match or int(match.group(1)) <= 0:
        raise InvalidRequest(f"invalid budget_duration '{text}': use <N>s, <N>m, <N>h, <N>d or <N>mo "
                             "(e.g. 30s, 1h, 30d, 1mo)", param="budget_duration",
                             code="invalid_budget_duration")
    return int(match.group(1)), match.group(2)


def add_months(moment, months):
    """The same day and time `months` later, clamped to the month's last day (Jan 31 + 1mo = Feb 28)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def add_duration(moment, duration):
    """`moment` plus one `duration` (`30d`, `1mo`): when a key created now with that lifetime expires."""
    count, unit = parse_duration(duration)
    if unit == "mo":
        return add_months(moment, count)
    return moment + datetime.timedelta(seconds=count * _SECONDS[unit])


def period(anchor, duration, now):
    """`(start, end)` of the budget period containing `now`; periods follow each other from `anchor`.

    Naive UTC datetimes throughout (as the models store them). Without a duration the one period is
    `(anchor, None)`: spend never resets."""
    if not duration:
        return anchor, None
    count, unit = parse_duration(duration)
    if now < anchor:
        now = anchor
    if unit != "mo":
        step = datetime.timedelta(seconds=count * _SECONDS[unit])
        elapsed = (now - anchor) // step
        start = anchor + elapsed * step
        return start, start + step
    # calendar months: months are counted from the anchor (not added one by one) so that a period
    # anchored on the 31st keeps coming back to the 31st where the month has one
    months = (now.year - anchor.year) * 12 + now.month - anchor.month
    n = max(0, months // count)
    start = add_months(anchor, n * count)
    while start > now:
        n -= 1
        start = add_months(anchor, n * count)
    end = add_months(anchor, (n + 1) * count)
    while end <= now:
        n += 1
        start, end = end, add_months(anchor, (n + 1) * count)
    return start, end
