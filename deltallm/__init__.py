"""DeltaLLM: a self-hosted, OpenAI-compatible LLM gateway."""
import logging

from flask import Flask

__version__ = "0.1.0"


def create_app(config=None):
    """Build the WSGI app from a config path, dict or Settings (default: see config.resolve_path)."""
    from deltallm import config as config_module, db
    from deltallm.api import admin, auth, chat, errors, health, models
    from deltallm.gateway import Gateway

    settings = config_module.load(config)
    app = Flask(__name__)
    app.json.sort_keys = False
    db.init(settings.database_url)
    app.extensions["deltallm"] = Gateway(settings)
    errors.init_app(app)
    auth.init_app(app)
    for module in (health, models, chat, admin):
        app.register_blueprint(module.bp)
    logging.getLogger(__name__).debug("app ready with %d models", len(settings.model_list))
    return app
