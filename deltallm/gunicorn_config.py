"""Gunicorn settings (gevent workers), shared by `deltallm serve` and the top-level gunicorn.conf.py."""
import sys

from deltallm.config import server_settings

_server = server_settings()

bind = f"{_server['host']}:{_server['port']}"
workers = _server["workers"]
worker_class = "gevent"
# One gevent worker multiplexes thousands of slow upstream calls and open streams.
worker_connections = _server["worker_connections"]
# For gevent workers this is a heartbeat, not a per-request limit: long streams are unaffected.
timeout = 120
graceful_timeout = 60
# Longer than the idle timeout of typical PaaS routers and load balancers in front of us.
keepalive = 75
accesslog = _server["access_log"]
errorlog = "-"
loglevel = _server["log_level"]
proc_name = "deltallm"
# Several instances may share a machine (tests, benchmarks); none of them needs the control socket.
control_socket_disable = True


def on_starting(server):
    """Migrate once, in the master, before any worker forks; a bad config stops the start here."""
    from deltallm.cli import prepare_database
    from deltallm.errors import ConfigError
    try:
        prepare_database()
    except ConfigError as exc:
        print(f"deltallm: config error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
