"""A key's spend in its current budget period, summed from the usage log, for key reads (SPEC §8)."""
from peewee import NodeList, fn

from deltallm.db import connection
from deltallm.governance.durations import period
from deltallm.models import Usage, utcnow

# keys per query: one query answers a page of /admin/keys; the statement stays small (SQLite takes at
# most 32766 variables, and older builds 999)
CHUNK = 200


def current_period(row, now):
    """`(start, end)` of the key's budget period containing `now`; the anchor is the limiter's
    (Policy.from_row), so a read shows the spend the budget is checked against. Without a
    budget_duration the one period runs from the anchor on (`end` None): spend never resets."""
    return period(row.budget_period_start or row.created_at, row.budget_duration, now)


def key_spends(rows, now=None):
    """`{key id: (USD spent in its current period, period end or None)}` for ApiKey `rows`: one grouped
    query per CHUNK keys (a page of keys costs one round trip, not one per key)."""
    now = now or utcnow()
    periods = {row.id: current_period(row, now) for row in rows}
    ids = list(periods)
    sums = {}
    with connection():
        for i in range(0, len(ids), CHUNK):
            sums.update(_sums({key_id: periods[key_id][0] for key_id in ids[i:i + CHUNK]}))
    # rounded like reports.spend_report, so a key's spend equals its records' total there
    return {key_id: (round(float(sums.get(key_id) or 0.0), 10), end) for key_id, (_, end) in periods.items()}


def _sums(starts):
    by_start = {}
    for key_id, start in starts.items():
        by_start.setdefault(start, []).append(key_id)
    # one (key in ..., since start) clause per distinct start, keys created together share one; joined
    # flat (a OR b OR c): nested pairs would overflow SQLite's parser stack at about 100 keys
    where = NodeList([Usage.key_id.in_(ids) & (Usage.created_at >= start) for start, ids in by_start.items()],
                     glue=" OR ", parens=True)
    return dict(Usage.select(Usage.key_id, fn.SUM(Usage.spend)).where(where).group_by(Usage.key_id).tuples())


def key_spend(row, now=None):
    """`(spent, period end or None)` for one key."""
    return key_spends([row], now)[row.id]
