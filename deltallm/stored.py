"""Registries kept in step with rows in the database (runtime deployments, MCP servers)."""
import logging
import time

logger = logging.getLogger(__name__)


class StoredRows:
    """Asks a loader for the stored rows at most once per `refresh_interval` seconds (or when forced).

    The loader gets what this worker already knows and returns None when nothing changed; a database
    hiccup is logged and the last known rows are kept."""

    def __init__(self, loader, refresh_interval, what):
        self.loader, self.refresh_interval, self.what = loader, refresh_interval, what
        self.checked_at = float("-inf")

    def load(self, known, force=False):
        """The loader's answer, or None when not due, unchanged, or the database failed."""
        if self.loader is None:
            return None
        now = time.monotonic()
        if not force and now - self.checked_at < self.refresh_interval:
            return None
        self.checked_at = now
        try:
            return self.loader(known)
        except Exception as exc:  # noqa: BLE001 - a database hiccup keeps the last known rows
            logger.warning("could not load the stored %s (%s); keeping the last list", self.what,
                           exc.__class__.__name__)
            return None
