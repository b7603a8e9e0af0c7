"""Secrets at rest: credentials given through the admin API (deployments, MCP servers) are stored encrypted
(Fernet)."""
import base64
import hashlib

from deltallm.errors import InvalidRequest


class SecretBox:
    """Encrypts with a key derived from `general_settings.encryption_key` (any string)."""

    def __init__(self, passphrase):
        self.enabled = bool(passphrase)
        self.fernet = None
        if passphrase:
            from cryptography.fernet import Fernet
            key = base64.urlsafe_b64encode(hashlib.sha256(passphrase.encode()).digest())
            self.fernet = Fernet(key)

    def seal(self, text, param="deltallm_params.api_key"):
        if self.fernet is None:
            raise InvalidRequest("This gateway has no encryption_key (general_settings.encryption_key or "
                                 "DELTALLM_ENCRYPTION_KEY), so it refuses to store credentials.",
                                 param=param, code="encryption_key_missing")
        return self.fernet.encrypt(text.encode()).decode()

    def open(self, token):
        if self.fernet is None:
            raise ValueError("no encryption_key configured: stored credentials cannot be read")
        return self.fernet.decrypt(token.encode()).decode()
