"""Deployments added through the admin API: stored in the database with their credentials sealed."""
import secrets as token_source

from deltallm.db import connection
from deltallm.models import DeploymentRow
from deltallm.router.deployment import is_secret


def loader(box):
    """A registry loader: None while the stored ids equal `known`, else every stored deployment."""
    def load(known):
        with connection():
            ids = {row.id for row in DeploymentRow.select(DeploymentRow.id)}
            if ids == known:
                return None
            rows = list(DeploymentRow.select().order_by(DeploymentRow.created_at, DeploymentRow.id))
        return [{"id": row.id, "model_name": row.model_name, "model_info": row.model_info or {},
                 "params": {**row.params, **(unseal(box, row.sealed) if row.sealed else {})}} for row in rows]
    return load


def unseal(box, sealed):
    import orjson
    return orjson.loads(box.open(sealed))


def store(box, model_name, params, model_info, deployment_id=None):
    """Save one deployment; credentials are sealed (refused when no encryption key is configured)."""
    import orjson
    plain = {k: v for k, v in params.items() if not is_secret(k)}
    hidden = {k: v for k, v in params.items() if is_secret(k) and v is not None}
    sealed = box.seal(orjson.dumps(hidden).decode()) if hidden else None
    with connection():
        return DeploymentRow.create(id=deployment_id or f"dep_{token_source.token_hex(6)}", model_name=model_name,
                                    params=plain, sealed=sealed, model_info=model_info or {})


def exists(deployment_id):
    with connection():
        return DeploymentRow.get_or_none(DeploymentRow.id == deployment_id) is not None


def delete(deployment_id):
    with connection():
        return DeploymentRow.delete().where(DeploymentRow.id == deployment_id).execute() > 0
