"""Database and service URLs: which kind a database_url names, its SQLite file, and how to show a
URL to people (the banner, the CLI) without its credentials."""
import os
from urllib.parse import urlsplit

DEFAULT_SQLITE = "deltallm.db"  # with no database_url: in the working directory (SPEC §1)


def database_kind(url):
    """'postgres' or 'sqlite' for a database_url (None: the default SQLite file)."""
    scheme = urlsplit(url).scheme if url else ""
    if scheme in ("postgres", "postgresql"):
        return "postgres"
    if scheme in ("sqlite", "file", ""):
        return "sqlite"
    return None


def sqlite_path(url):
    """The file a SQLite database_url names (`sqlite:///path` or a bare path), or ':memory:'."""
    url = url or DEFAULT_SQLITE
    if urlsplit(url).scheme == "sqlite":
        url = url[len("sqlite:///"):] if url.startswith("sqlite:///") else urlsplit(url).path
    return url or ":memory:"


def describe_url(url):
    """A service URL without credentials or query string (which may carry a password)."""
    parts = urlsplit(url)
    if not parts.netloc:
        return f"{parts.scheme}://{parts.path}" if parts.scheme else parts.path
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def describe_database(url):
    """The database a URL names, for humans: the absolute SQLite path, or the server without credentials."""
    if database_kind(url) == "postgres":
        return describe_url(url)
    path = sqlite_path(url)
    return "SQLite in memory" if path == ":memory:" else f"SQLite file {os.path.abspath(path)}"
