"""WSGI entry point for PaaS: `gunicorn -c gunicorn.conf.py wsgi:app`."""
from deltallm import create_app

app = create_app()
