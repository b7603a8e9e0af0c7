"""Upstream HTTP plumbing: the pooled transport, proxy and TLS choice per deployment, and deadlines."""
import datetime
import ipaddress
import logging
import select
import socket
import time
from urllib.parse import urlsplit

from requests import Response
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest
from requests.cookies import RequestsCookieJar
from requests.utils import get_encoding_from_headers
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

logger = logging.getLogger(__name__)

# Sized for gevent: one worker holds many concurrent upstream connections (1,000 streams and more).
POOL_SIZE = 2048
CONNECT_CAP = 10.0  # SPEC §9: connecting is capped at 10 s
ZERO = datetime.timedelta(0)
POLLIN = select.POLLIN


class HttpOptions:
    """Gateway-wide upstream settings, resolved once at startup and shared by every deployment.

    `proxies` ({"http"|"https"|"all": url}), `no_proxy` and `ca_bundle` come from the environment
    (see config.upstream_environment); `max_event_bytes` bounds one stream event or error body.
    """

    def __init__(self, proxies=None, no_proxy="", ca_bundle=None, max_event_mb=8):
        self.proxies = dict(proxies or {})
        self.no_proxy = no_proxy or ""
        self.ca_bundle = ca_bundle or None
        self.max_event_bytes = int(max_event_mb * 1024 * 1024)


DEFAULT_OPTIONS = HttpOptions()


def make_transport():
    """requests' pooled transport for one deployment, used without a Session (see Transport)."""
    return Transport()


class Transport(HTTPAdapter):
    """requests' HTTPAdapter, trimmed for the upstream calls of one deployment.

    A Session re-merges settings, environment (proxies, netrc, CA bundle), cookies and hooks on every
    call - about a quarter of a proxied request's CPU in bench/. Upstream calls need none of it: the
    URL, headers and body are built by the provider, there are no cookies or redirects, and the proxy
    and CA bundle are resolved once per deployment (`proxies_for`, `verify_for`). Beyond that, this
    adapter remembers which connection pool and request target a URL uses (one deployment calls a
    handful of URLs), builds responses without a cookie jar, and checks a pooled connection for a
    hang-up with one poll(2) call instead of gevent's cooperative poll (a zero-timeout check never
    waits). Together that is ~8 % of a proxied request's CPU (bench/README.md).
    """

    MAX_REMEMBERED = 256  # URLs per deployment: a handful in practice; the bound guards odd upstreams

    def __init__(self):
        super().__init__(pool_connections=8, pool_maxsize=POOL_SIZE, max_retries=0)
        self.poolmanager.pool_classes_by_scheme = {"http": CheckedPool, "https": CheckedHTTPSPool}
        self._routes = {}  # (url, verify, proxies, cert) -> (connection pool, request target)

    def _route(self, request, verify, proxies, cert):
        key = (request.url, verify, tuple(sorted(proxies.items())) if proxies else None, cert)
        route = self._routes.get(key)
        if route is None or route[0].pool is None:  # a closed pool has no connection queue
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            route = (pool, super().request_url(request, proxies))
            if len(self._routes) >= self.MAX_REMEMBERED:
                self._routes.clear()
            self._routes[key] = route
        return route

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        pool, request.deltallm_target = self._route(request, verify, proxies, cert)
        return pool

    def request_url(self, request, proxies):
        # HTTPAdapter.send asks right after get_connection_with_tls_context, which remembered it
        target = getattr(request, "deltallm_target", None)
        return target if target is not None else super().request_url(request, proxies)

    def build_response(self, req, resp):
        response = UpstreamResponse()
        response.status_code = resp.status
        response.headers = resp.headers  # urllib3's HTTPHeaderDict: case-insensitive already
        response.encoding = get_encoding_from_headers(resp.headers)
        response.raw, response.reason, response.url = resp, resp.reason, req.url
        response.request, response.connection = req, self
        return response


class UpstreamRequest(PreparedRequest):
    """A prepared upstream request: the provider built its URL, headers and body already, and no
    Session dispatches hooks here, so none of PreparedRequest's per-request tables are made."""

    NO_HOOKS = {"response": ()}

    def __init__(self, method, url, headers, body):  # noqa: D107 - PreparedRequest.__init__ minus the tables
        self.method, self.url, self.headers, self.body = method, url, headers, body
        self._cookies = None
        self.body_position = None
        self.hooks = self.NO_HOOKS


class UpstreamResponse(Response):
    """A requests Response whose cookie jar is made only if asked for (upstreams set none we use)."""

    def __init__(self):  # noqa: D107 - Response.__init__ minus the eager cookie jar
        self._content, self._content_consumed, self._next = False, False, None
        self.status_code = self.headers = self.raw = self.url = self.encoding = self.reason = None
        self.history, self.elapsed, self.request, self.connection = [], ZERO, None, None
        self._cookies = None

    @property
    def cookies(self):
        if self._cookies is None:
            self._cookies = RequestsCookieJar()
        return self._cookies

    @cookies.setter
    def cookies(self, value):
        self._cookies = value


class QuickCheck:
    """`is_connected` with the unpatched poll(2): urllib3 asks it, with a zero timeout, every time a
    pooled connection is reused; gevent's cooperative poll costs ~15x more for the same answer."""

    @property
    def is_connected(self):
        if self.sock is None:
            return False
        poller = NATIVE_POLL()
        poller.register(self.sock, POLLIN)
        return not poller.poll(0)  # readable while idle: the peer closed it (or sent garbage)


class CheckedConnection(QuickCheck, HTTPConnection):
    pass


class CheckedHTTPSConnection(QuickCheck, HTTPSConnection):
    pass


class CheckedPool(HTTPConnectionPool):
    ConnectionCls = CheckedConnection


class CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = CheckedHTTPSConnection


def native_poll():
    try:
        from gevent.monkey import get_original
        return get_original("select", "poll")
    except ImportError:
        return select.poll

NATIVE_POLL = native_poll()


class HeaderDict(dict):
    """The headers of an upstream request: a plain dict, which urllib3 copies for each request at a
    fraction of a CaseInsensitiveDict's cost, whose lookups by a name in another case still find the
    header (HTTP names are case-insensitive; the providers spell each name one way)."""

    def find(self, name):
        lower = name.lower()
        return next((value for key, value in self.items() if key.lower() == lower), None)

    def __missing__(self, name):
        value = self.find(name)
        if value is None:
            raise KeyError(name)
        return value

    def get(self, name, default=None):
        if dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        value = self.find(name) if isinstance(name, str) else None
        return default if value is None else value

    def __contains__(self, name):
        return dict.__contains__(self, name) or (isinstance(name, str) and self.find(name) is not None)


def verify_for(params, options):
    """requests' `verify`: the deployment's ssl_verify (bool or CA path), else the environment's bundle."""
    value = params.get("ssl_verify")
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        value = value.strip().lower() == "true"
    if value is None or value is True:
        return options.ca_bundle or True
    return value


def proxies_for(url, params, options):
    """The proxies mapping for requests to `url` (None for a direct connection).

    A deployment's `proxy` always applies; otherwise HTTP(S)_PROXY/ALL_PROXY do, unless NO_PROXY
    names the host. The host of a deployment never changes, so this runs once, at startup.
    """
    if params.get("proxy"):
        return {"http": params["proxy"], "https": params["proxy"]}
    parts = urlsplit(url)
    proxy = options.proxies.get(parts.scheme) or options.proxies.get("all")
    if not proxy or bypasses(parts.hostname or "", parts.port, options.no_proxy):
        return None
    return {parts.scheme: proxy}


def bypasses(host, port, no_proxy):
    """True when NO_PROXY (curl's rules: `*`, host suffixes, IPs and CIDR blocks, optional :port) names host."""
    host = host.lower().strip("[]")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and (not entry_port.isdigit() or int(entry_port) != port):
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name) or in_network(host, name):
            return True
    return False


def in_network(host, entry):
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False


def display_host(url):
    """scheme://host[:port] of a URL, never its userinfo (for error messages)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


# -- deadlines ------------------------------------------------------------------------------------
class Timer:
    """When the current wait must end (`deadline`, time.monotonic) and the longest single read.

    Streams move `deadline` forward as events complete, so it bounds the silence between them.
    """

    __slots__ = ("deadline", "per_read")

    def __init__(self, deadline, per_read):
        self.deadline = deadline
        self.per_read = per_read

    def remaining(self):
        return self.deadline - time.monotonic()


class DeadlineSocket:
    """Wraps the socket a response reads from: every recv gets at most the time left on the timer,
    so an upstream dripping a byte at a time cannot stretch a read past the deadline."""

    def __init__(self, sock, timer):
        self._sock = sock
        self._timer = timer

    def recv_into(self, buffer, nbytes=0, flags=0):
        left = self._timer.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("upstream deadline passed")
        self._sock.settimeout(min(left, self._timer.per_read))
        return self._sock.recv_into(buffer, nbytes, flags)

    def recv(self, bufsize, flags=0):
        left = self._timer.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("upstream deadline passed")
        self._sock.settimeout(min(left, self._timer.per_read))
        return self._sock.recv(bufsize, flags)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def cooperative():
    """True in a gevent-patched process (gunicorn's gevent workers), where gevent.Timeout can
    interrupt any wait; decided when an adapter is built, after the worker patched itself."""
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("socket")


class AttemptDeadline:
    """Under gevent, bounds connect + send + headers (+ the body, if read inside) as a whole: a
    peer dripping bytes defeats per-read timeouts. Elsewhere a no-op: `arm` bounds the body then."""

    __slots__ = ("timeout",)

    def __init__(self, seconds, enabled):
        self.timeout = None
        if enabled:
            from gevent import Timeout
            self.timeout = Timeout(seconds, socket.timeout("upstream deadline passed"))

    def __enter__(self):
        if self.timeout is not None:
            self.timeout.start()

    def __exit__(self, *exc):
        if self.timeout is not None:
            self.timeout.close()


def arm(resp, timer):
    """Put `timer` between the response body and its socket; returns a function undoing it.

    Responses without a real socket (tests' mocks) are left alone: reads there never block.
    """
    io = socket_io(resp)
    if io is None:
        return lambda: None
    sock = io._sock
    previous = sock.gettimeout()
    io._sock = DeadlineSocket(sock, timer)

    def disarm():
        io._sock = sock
        try:
            sock.settimeout(previous)  # the connection goes back to the pool as it came
        except OSError:
            pass
    return disarm


def socket_io(resp):
    """The socket.SocketIO under an urllib3 response (http.client's fp), or None."""
    fp = getattr(getattr(getattr(resp, "raw", None), "_fp", None), "fp", None)
    io = getattr(fp, "raw", None)
    return io if io is not None and hasattr(io, "_sock") and hasattr(io._sock, "recv_into") else None
