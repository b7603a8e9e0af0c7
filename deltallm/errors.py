"""The one error root: every failure is a GatewayError rendered as the OpenAI error envelope."""


class GatewayError(Exception):
    """Base error; subclasses only set class attributes."""

    status = 500
    type = "server_error"
    code = None
    retryable = False
    # routing facts: the deployment itself is at fault (its credentials or model are wrong), the
    # fallback chain a refusal leads to ('context_window' | 'content_policy'), the seconds a 429 asked
    # us to wait before trying that deployment again, and the upstream's own words for the log
    deployment_fault = False
    kind = None
    retry_after = None
    upstream_message = None

    def __init__(self, message, *, param=None, code=None, status=None, type=None,
                 headers=None, retryable=None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if retryable is not None:
            self.retryable = retryable
        self.headers = dict(headers or {})

    def to_dict(self):
        return {"error": {"message": self.message, "type": self.type,
                          "param": self.param, "code": self.code}}


class InvalidRequest(GatewayError):
    status, type = 400, "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class PermissionDenied(GatewayError):
    status, type, code = 403, "permission_denied", "permission_denied"


class NotFound(GatewayError):
    status, type, code = 404, "invalid_request_error", "not_found"


class ModelNotFound(GatewayError):
    status, type, code = 404, "invalid_request_error", "model_not_found"


class MethodNotAllowed(GatewayError):
    status, type, code = 405, "invalid_request_error", "method_not_allowed"


class RequestTooLarge(GatewayError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class RateLimited(GatewayError):
    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"


class UpstreamError(GatewayError):
    """Upstream 5xx or connection failure: retryable, reported as 502 once retries run out."""
    status, type, code, retryable = 502, "upstream_error", "upstream_error", True


class UpstreamAuthFailed(GatewayError):
    """Our provider credentials were refused: a gateway configuration problem, never the client's."""
    status, type, code = 502, "upstream_error", "upstream_auth_failed"


class UpstreamRateLimited(GatewayError):
    status, type, code, retryable = 429, "rate_limit_error", "upstream_rate_limited", True


class UpstreamTimeout(GatewayError):
    status, type, code, retryable = 504, "timeout_error", "upstream_timeout", True


class UpstreamRejected(GatewayError):
    """An upstream 4xx passed on with its status and message (not retryable)."""
    type = "invalid_request_error"


class ProviderMisconfigured(GatewayError):
    """A deployment's settings cannot work (e.g. Azure without api_base); found when its adapter is built."""
    status, type, code = 500, "server_error", "provider_misconfigured"


class NoHealthyDeployments(GatewayError):
    status, type, code = 503, "service_unavailable", "no_healthy_deployments"


class ConfigError(Exception):
    """A bad configuration; the message is one readable line naming the offending key."""
