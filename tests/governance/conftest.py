"""Fixtures for governance tests: a fake clock and a Redis client whose keys are deleted afterwards."""
import uuid

import pytest
import redis as redis_lib

from tests.conftest import REDIS_URL


class FakeClock:
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def redis_client():
    return redis_lib.Redis.from_url(REDIS_URL)


@pytest.fixture
def prefix(redis_client):
    """A key prefix of this test's own; every key under it is deleted at the end."""
    name = f"test:gov:{uuid.uuid4().hex[:10]}:"
    yield name
    keys = list(redis_client.scan_iter(match=name + "*", count=1000))
    if keys:
        redis_client.delete(*keys)
