"""Gunicorn settings (gevent workers), shared by `deltallm serve` and the top-level gunicorn.conf.py."""
import subprocess
import sys

from deltallm.config import server_settings

_server = server_settings()

bind = f"{_server['host']}:{_server['port']}"
workers = _server["workers"]
# gunicorn's gevent worker, answering malformed HTTP with the JSON error envelope instead of HTML
worker_class = "deltallm.server.Worker"
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
    """Show the banner and migrate once, before any worker forks; a bad config stops the start here.

    The banner comes from config data alone. Migrating runs in a child process so that the master
    never imports Peewee or a database driver: a module imported before gevent patches the workers
    keeps the real `threading.local`, and Peewee's per-connection state would then be shared by every
    greenlet of a worker.
    """
    from deltallm import banner, config
    from deltallm.errors import ConfigError
    try:
        settings = config.load(None)
    except ConfigError as exc:
        server.log.error("config error: %s", exc)
        sys.exit(1)
    banner.announce(server.log, settings)
    done = subprocess.run([sys.executable, "-m", "deltallm.cli", "migrate", "--quiet"], check=False)
    if done.returncode:
        sys.exit(done.returncode)


def worker_exit(server, worker):
    """A worker that stops (SIGTERM, restart, max requests) first writes what it buffered: usage records."""
    app = getattr(worker, "wsgi", None)
    # our Worker wraps the Flask app (deltallm.server.closing); the gateway hangs on the app itself
    app = getattr(app, "__wrapped__", app)
    gateway = getattr(app, "extensions", {}).get("deltallm") if app is not None else None
    if gateway is not None:
        gateway.close()
