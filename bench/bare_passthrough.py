"""The reference: the least a Flask + gevent + requests proxy can do (no auth, validation or routing).

    cd bench && BARE_UPSTREAM=http://127.0.0.1:9100/v1 gunicorn -k gevent -w 1 bare_passthrough:app

(From bench/, so that gunicorn does not pick up the repository's gunicorn.conf.py.)
"""
import os

import requests
from flask import Flask, Response, request
from requests.adapters import HTTPAdapter

UPSTREAM = os.environ.get("BARE_UPSTREAM", "http://127.0.0.1:9100/v1").rstrip("/")
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer upstream-key"}

app = Flask(__name__)
session = requests.Session()
session.trust_env = False
session.mount("http://", HTTPAdapter(pool_connections=8, pool_maxsize=2048, max_retries=0))


@app.post("/v1/chat/completions")
def chat_completions():
    body = request.get_data()
    stream = b'"stream":true' in body.replace(b" ", b"")  # good enough for a reference proxy
    resp = session.post(UPSTREAM + "/chat/completions", data=body, headers=HEADERS,
                        stream=stream, timeout=(10, 600))
    if not stream:
        return Response(resp.content, status=resp.status_code, mimetype="application/json")
    return Response(resp.iter_content(chunk_size=None), status=resp.status_code,
                    mimetype="text/event-stream", direct_passthrough=True)
