"""GET /v1/key/info (and LiteLLM's /key/info): the calling key's own limits, budget and spend."""
from flask import Blueprint, g

from deltallm.api.common import json_response
from deltallm.db import connection
from deltallm.errors import AuthenticationFailed
from deltallm.governance.key_spend import key_spend
from deltallm.keys import public
from deltallm.models import ApiKey

bp = Blueprint("key_info", __name__)

MASTER_INFO = {"object": "master_key", "master_key": True,
               "message": "This is the master key: it has no limits or budget. Its requests are "
                          "recorded with key_id null (see GET /admin/spend)."}


@bp.get("/v1/key/info")
@bp.get("/key/info")
def key_info():
    principal = g.principal
    if principal.is_master:
        return json_response(MASTER_INFO)
    with connection():
        # read afresh: a change made through the admin API shows at once, not after the key cache
        row = ApiKey.get_or_none((ApiKey.id == principal.key_id) & ApiKey.revoked_at.is_null())
    if row is None:      # revoked since this worker cached the key
        raise AuthenticationFailed("Incorrect API key provided.")
    spend, reset_at = key_spend(row)
    return json_response(public(row, None, spend, reset_at))
