"""Gunicorn config for `gunicorn -c gunicorn.conf.py wsgi:app`; the settings live in the package."""
from deltallm.gunicorn_config import (accesslog, bind, errorlog, graceful_timeout, keepalive,  # noqa: F401
                                      loglevel, on_starting, proc_name, timeout, worker_class,
                                      worker_connections, workers, worker_exit, control_socket_disable)
