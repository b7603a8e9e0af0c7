"""DeltaLLM: a self-hosted, OpenAI-compatible LLM gateway."""
import logging

__version__ = "0.1.0"


def create_app(config=None):
    """Build the WSGI app from a config path, dict or Settings (default: see config.resolve_path)."""
    # imported here: the gunicorn master imports this package (for deltallm.server) and needs no Flask
    from flask import Flask

    from deltallm import config as config_module, db
    from deltallm.api import (access, admin, admin_mcp, admin_models, audio, auth, batches, chat, completions,
                              embeddings, errors, files, health, key_info, mcp, models, openapi, rerank,
                              responses)
    from deltallm.gateway import Gateway

    settings = config_module.load(config)
    app = Flask(__name__, static_folder=None)  # no static files: every route is an API route
    app.json.sort_keys = False
    # `//v1/models` is an unknown route (404), not a redirect to /v1/models: clients never see HTML
    app.url_map.merge_slashes = False
    db.init(settings.database_url)
    app.extensions["deltallm"] = Gateway(settings)
    errors.init_app(app)
    auth.init_app(app)
    for module in (health, models, chat, completions, responses, embeddings, audio, rerank, key_info, admin,
                   admin_models, admin_mcp, mcp, openapi):
        app.register_blueprint(module.bp)
    if settings.general["embeddings_batch_enabled"]:  # otherwise /v1/files, /v1/batches are unknown routes (404)
        app.register_blueprint(files.bp)
        app.register_blueprint(batches.bp)
        from deltallm.jobs.runner import runner_for
        runner_for(app.extensions["deltallm"])  # without Redis: resumes batches a previous process left
    use_server_logging()
    access.init(config_module.server_settings()["log_format"])
    return app


def use_server_logging():
    """Under gunicorn, our loggers write through its error log (same format, level and target)."""
    server = logging.getLogger("gunicorn.error")
    ours = logging.getLogger("deltallm")
    if server.handlers and not ours.handlers:
        ours.handlers = server.handlers
        ours.setLevel(server.level)
        ours.propagate = False
