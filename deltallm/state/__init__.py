"""Shared router state behind one small interface: in process memory, or traded through Redis."""
from deltallm.state.local import LocalState, Stats, retry_after_seconds


def make_state(redis=None, **kwargs):
    """SharedState when a Redis client is given, else LocalState."""
    if redis is None:
        return LocalState(**{k: v for k, v in kwargs.items() if k == "clock"})
    from deltallm.state.shared import SharedState
    return SharedState(redis, **kwargs)


__all__ = ["LocalState", "Stats", "make_state", "retry_after_seconds"]
