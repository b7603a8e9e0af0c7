"""The startup banner: what this server will serve, from config data alone (no database or HTTP import)."""
import logging

from deltallm import __version__
from deltallm.urls import describe_database, describe_url

logger = logging.getLogger(__name__)

# Set in the gunicorn master once it has shown the banner; forked workers inherit it and stay quiet.
announced = False


def lines(settings):
    """[(logging level, line)]: the banner, then one warning per ignored setting."""
    groups = {}
    for entry in settings.model_list:
        groups[entry["model_name"]] = groups.get(entry["model_name"], 0) + 1
    shown = ", ".join(f"{name} ({count} deployment{'s' * (count != 1)})" for name, count in groups.items())
    redis = describe_url(settings.redis_url) if settings.redis_url else None
    batches = "off"
    if settings.general.get("embeddings_batch_enabled"):
        batches = "RQ workers on Redis" if redis else "in-process runner"
    out = [
        (logging.INFO, f"DeltaLLM {__version__}, config: {settings.path or 'none'}"),
        (logging.INFO, f"model groups ({len(groups)}): {shown or 'none'}"),
        (logging.INFO, f"database: {describe_database(settings.database_url)}"
                       f"{via(settings, 'database_url')}"),
        (logging.INFO, f"redis: {redis}{via(settings, 'redis_url')}" if redis else
                       "redis: none (rate limits and router state in process memory)"),
        (logging.INFO, f"batches: {batches}"),
        (logging.INFO, f"mcp servers: {', '.join(map(str, settings.mcp_servers)) or 'none'}"),
    ]
    if settings.master_key:
        out.append((logging.INFO, f"master key: set{via(settings, 'master_key')}"))
    else:
        out.append((logging.WARNING, "master key: not set: the admin API is closed; create keys with "
                                     "`deltallm keys create`"))
    out += [(logging.WARNING, line) for line in settings.warnings]
    return out


def via(settings, key):
    var = settings.env_overrides.get(key)
    return f" (from {var})" if var else ""


def announce(log, settings):
    """Write the banner through `log` (gunicorn's error log in the master) and mark it shown."""
    global announced
    for level, line in lines(settings):
        log.log(level, "%s", line)
    announced = True


def warn_once_per_process(settings):
    """Outside our gunicorn master (another WSGI server, tests), each process says what it ignores."""
    if announced:
        return
    for level, line in lines(settings):
        if level >= logging.WARNING:
            logger.warning("%s", line)
