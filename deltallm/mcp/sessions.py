"""Sessions of the /mcp gateway: signed ids any worker can check, and ended ids shared through Redis.

A session id is `nonce.version.signature`, the signature binding it to the key that initialized it,
so no worker needs to have seen the initialize. DELETE /mcp ends a session: with Redis every worker
learns it at once; without Redis only the worker that answered the DELETE (per-worker state, as for
rate limits without Redis).
"""
import hashlib
import hmac
import secrets
import time

ENDED_TTL = 24 * 3600  # how long an ended session id is remembered (its clients are gone by then)
MAX_LOCAL = 100_000


class Sessions:
    def __init__(self, secret, redis=None):
        # the operator's secrets are shared by every worker; without them this worker signs alone
        self.key = hashlib.sha256(b"deltallm-mcp-session:" + (secret or secrets.token_hex(32)).encode()).digest()
        self.redis = redis
        self.ended = {}

    def sign(self, nonce, version, owner):
        message = f"{nonce}.{version}.{owner or '*'}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()[:32]

    def create(self, version, owner):
        nonce = secrets.token_hex(16)
        return f"{nonce}.{version}.{self.sign(nonce, version, owner)}"

    def version(self, session_id, owner):
        """The protocol version of a live session of `owner` (a key id, None for the master key), or None."""
        parts = (session_id or "").split(".")
        if len(parts) != 3:
            return None
        nonce, version, signature = parts
        if not hmac.compare_digest(signature, self.sign(nonce, version, owner)) or self.is_ended(nonce):
            return None
        return version

    def end(self, session_id):
        nonce = session_id.split(".")[0]
        if self.redis is not None:
            self.redis.set(f"deltallm:mcp:ended:{nonce}", 1, ex=ENDED_TTL)
            return
        now = time.monotonic()
        if len(self.ended) >= MAX_LOCAL:  # bounded: expired ids go first, then the oldest half
            self.ended = {n: t for n, t in self.ended.items() if t > now}
            if len(self.ended) >= MAX_LOCAL:
                self.ended = dict(list(self.ended.items())[MAX_LOCAL // 2:])
        self.ended[nonce] = now + ENDED_TTL

    def is_ended(self, nonce):
        if self.redis is not None:
            return bool(self.redis.exists(f"deltallm:mcp:ended:{nonce}"))
        until = self.ended.get(nonce)
        return until is not None and until > time.monotonic()
