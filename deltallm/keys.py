"""Virtual keys: creation, salted hashing, and a short-lived per-worker cache for authentication."""
import datetime
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict

from deltallm.db import connection
from deltallm.errors import AuthenticationFailed
from deltallm.governance.limits import Policy
from deltallm.models import ApiKey, utcnow

KEY_PREFIX = "sk-dl-"
# Revocation must reach every worker within a second: no cached answer lives longer than this.
CACHE_TTL = 1.0
# Bounds per worker: a flood of distinct keys costs at most this many small entries, not memory.
CACHE_MAX = 10_000
# A real key is about 60 characters; anything this long is refused before it is hashed or cached.
MAX_KEY_LENGTH = 512


def hash_secret(salt, secret):
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def new_key():
    """(id, plaintext key, salt, hash); the id is embedded so lookup needs no scan."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(24)
    salt = secrets.token_hex(16)
    return key_id, f"{KEY_PREFIX}{key_id}-{secret}", salt, hash_secret(salt, secret)


def hint(plaintext):
    return f"{plaintext[:10]}...{plaintext[-4:]}"


def create_key(**fields):
    """Store a new key; returns (row, plaintext). The plaintext is never stored. Its first budget
    period starts now."""
    key_id, plaintext, salt, digest = new_key()
    now = utcnow()
    fields = {"created_at": now, "updated_at": now, "budget_period_start": now, **fields}
    with connection():
        row = ApiKey.create(id=key_id, salt=salt, key_hash=digest, key_hint=hint(plaintext), **fields)
    return row, plaintext


def regenerate_key(row):
    """Give live key `row` a new secret (same id, limits and spend); returns the new plaintext. The old
    secret stops authenticating once the workers' cached answers expire (CACHE_TTL)."""
    secret = secrets.token_urlsafe(24)
    plaintext = f"{KEY_PREFIX}{row.id}-{secret}"
    row.salt = secrets.token_hex(16)
    row.key_hash = hash_secret(row.salt, secret)
    row.key_hint = hint(plaintext)
    row.updated_at = utcnow()
    with connection():
        row.save(only=[ApiKey.salt, ApiKey.key_hash, ApiKey.key_hint, ApiKey.updated_at])
    return plaintext


class Principal:
    """Who is calling: the master key, or an immutable snapshot of a virtual key."""

    __slots__ = ("is_master", "key_id", "models", "mcp_servers", "expires_at", "row", "policy")

    def __init__(self, row=None):
        self.is_master = row is None
        self.row = row
        self.key_id = row.id if row else None
        self.models = frozenset(row.models or ()) if row else frozenset()
        self.mcp_servers = tuple(row.mcp_servers or ()) if row else ()
        self.expires_at = row.expires_at if row else None
        # the key's limits and budget (None for the master key: recorded, never limited)
        self.policy = Policy.from_row(row) if row else None

    def may_use_model(self, name):
        return self.is_master or not self.models or name in self.models


MASTER = Principal()


class KeyStore:
    """Authenticates bearer keys; caches answers for at most CACHE_TTL seconds per worker.

    Live keys are cached by the key itself (the hot path is one dict lookup); unknown keys by a
    16-byte digest, so a client cycling through bad keys neither reaches the database on every retry
    nor makes the worker hold what it sent. Both caches are bounded and drop expired entries first.
    """

    def __init__(self, master_key):
        self.master_key = master_key.encode() if master_key else None
        # an operator's long master key is still accepted
        self.max_length = max(MAX_KEY_LENGTH, len(master_key or ""))
        self.known = TtlCache()
        self.unknown = TtlCache()

    def authenticate(self, presented):
        if not presented:
            raise AuthenticationFailed("Missing API key. Send it as 'Authorization: Bearer <key>'.")
        if len(presented) > self.max_length:
            raise AuthenticationFailed("Incorrect API key provided.")
        principal = self.known.get(presented)
        if principal is None:
            principal = self.resolve(presented)
        if principal.expires_at is not None and principal.expires_at <= utcnow():
            raise AuthenticationFailed("This API key has expired.")
        return principal

    def resolve(self, presented):
        """The Principal for a key missing from the cache of live keys (the master key is never cached)."""
        if self.master_key and hmac.compare_digest(presented.encode(), self.master_key):
            return MASTER
        digest = hashlib.blake2b(presented.encode(), digest_size=16).digest()
        if self.unknown.get(digest) is None:
            principal = self.lookup(presented)
            if principal is not None:
                self.known.put(presented, principal)
                return principal
            self.unknown.put(digest, True)
        raise AuthenticationFailed("Incorrect API key provided.")

    @staticmethod
    def lookup(presented):
        """A Principal for a live key, or None."""
        if not presented.startswith(KEY_PREFIX) or "\x00" in presented:  # NUL: PostgreSQL refuses it
            return None
        key_id, sep, secret = presented[len(KEY_PREFIX):].partition("-")
        if not sep or not key_id or not secret:
            return None
        with connection():
            row = ApiKey.get_or_none((ApiKey.id == key_id) & ApiKey.revoked_at.is_null())
        if row is None or not hmac.compare_digest(row.key_hash, hash_secret(row.salt, secret)):
            return None
        return Principal(row)


class TtlCache:
    """A bounded map whose entries live CACHE_TTL seconds; the oldest go first when it is full.

    Every entry gets the same lifetime, so insertion order is expiry order and eviction only ever
    looks at the front. Answers are not refreshed on a hit: revocation must show within CACHE_TTL.
    """

    def __init__(self, ttl=CACHE_TTL, size=CACHE_MAX):
        self.ttl = ttl
        self.size = size
        self.entries = OrderedDict()

    def get(self, key):
        hit = self.entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key, value):
        now = time.monotonic()
        entries = self.entries
        entries.pop(key, None)
        while entries and (len(entries) >= self.size or next(iter(entries.values()))[0] < now):
            entries.popitem(last=False)
        entries[key] = (now + self.ttl, value)

    def __len__(self):
        return len(self.entries)


def parse_time(value):
    """ISO 8601 string or unix seconds -> naive UTC datetime (None passes through)."""
    if value is None or isinstance(value, datetime.datetime):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.datetime.fromtimestamp(value, datetime.timezone.utc).replace(tzinfo=None)
    parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo:
        parsed = parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return parsed


def iso(value):
    return None if value is None else value.replace(microsecond=0).isoformat() + "Z"


def public(row, plaintext=None, spend=0.0, reset_at=None):
    """The admin API's view of a key: never the hash or salt; the plaintext only at creation (and
    regeneration). `spend` is its spend in the current budget period, `reset_at` that period's end
    (governance.key_spend computes both)."""
    out = {"id": row.id, "object": "api_key", "name": row.name, "key_hint": row.key_hint,
           "models": row.models or [], "mcp_servers": row.mcp_servers or [],
           "metadata": row.metadata or {}, "max_budget": row.max_budget,
           "budget_duration": row.budget_duration, "rpm_limit": row.rpm_limit,
           "tpm_limit": row.tpm_limit, "max_parallel_requests": row.max_parallel_requests,
           "model_rpm_limit": row.model_rpm_limit or {}, "model_tpm_limit": row.model_tpm_limit or {},
           "spend": spend, "budget_reset_at": iso(reset_at), "expires_at": iso(row.expires_at),
           "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}
    if plaintext:
        out["key"] = plaintext
    return out
