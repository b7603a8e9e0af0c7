"""The `deltallm` command: serve, worker, dashboard, migrate, keys, check-config."""
import argparse
import os
import sys

from deltallm import __version__, config as config_module
from deltallm.errors import ConfigError

BATCH_QUEUE = "deltallm-batches"  # jobs.runner.QUEUE


def prepare_database(config_path=None, announce=True):
    """Load the config, bind the database, run migrations (idempotent); returns the Settings.

    Says on stderr which database it used: a relative SQLite path depends on the working directory.
    """
    from deltallm import db, models
    settings = config_module.load(config_path)
    if announce:
        print(f"deltallm: database: {database_line(settings)}", file=sys.stderr)
    try:
        db.init(settings.database_url)
        models.migrate()
        db.database.close_all()  # no pooled connection may cross a fork
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - one readable line, never a traceback
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(f"general_settings.database_url: cannot prepare the database: "
                          f"{exc.__class__.__name__}: {detail}") from None
    return settings


def database_line(settings):
    """The database in use, without credentials, and where that choice came from."""
    where = settings.env_overrides.get("database_url")
    if not where:
        where = "general_settings.database_url" if settings.database_url else "the default: no database_url"
    config = f", config {settings.path}" if settings.path else ", no config file"
    return f"{config_module.describe_database(settings.database_url)} (from {where}{config})"


def cmd_serve(args):
    if args.config:
        os.environ["DELTALLM_CONFIG_PATH"] = os.path.abspath(args.config)
    config_module.load(None)  # fail fast, before gunicorn starts, on a bad config
    server = config_module.server_settings()  # the PaaS variables are the defaults; a flag wins
    host = args.host if args.host is not None else server["host"]
    port = args.port if args.port is not None else server["port"]
    from gunicorn.app.wsgiapp import run
    conf = os.path.join(os.path.dirname(__file__), "gunicorn_config.py")
    argv = ["gunicorn", "-c", conf, "--bind", f"{host}:{port}"]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    sys.argv = argv + ["deltallm:create_app()"]
    return run()


def cmd_worker(args):
    """An RQ worker for batch jobs, plus the sweep that restarts batches whose job died.

    Jobs run in this process (RQ's SimpleWorker: no fork per job), so a batch's lines share one gateway
    (its router state, connection pools and usage writer); killing this process kills its job, which
    the sweep of any worker notices when the batch's lease runs out."""
    import logging
    import time

    from redis import Redis
    from redis.exceptions import ConnectionError as RedisDown, TimeoutError as RedisSlow
    from rq import Queue, SimpleWorker
    settings = config_module.load(args.config)
    if not settings.redis_url:
        raise ConfigError("general_settings.redis_url: the batch worker needs Redis (or REDIS_URL)")
    from deltallm import db
    from deltallm.gateway import Gateway
    from deltallm.jobs import runner
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prepare_database(args.config)
    db.init(settings.database_url)
    gateway = Gateway(settings)
    runner.use_worker_gateway(gateway)
    connection = Redis.from_url(settings.redis_url)
    sweeper = runner.RqRunner(gateway, connection, args.queue)
    if not args.burst:
        sweeper.start_sweeping()
    try:
        while True:
            worker = SimpleWorker([Queue(args.queue, connection=connection)], connection=connection)
            try:
                worker.work(burst=args.burst)
                return 0
            except (RedisDown, RedisSlow) as exc:  # Redis away: wait for it, the batches keep their state
                print(f"deltallm: worker: Redis unavailable ({exc.__class__.__name__}); retrying",
                      file=sys.stderr)
                time.sleep(2)
    finally:
        sweeper.close()
        gateway.close()


def cmd_dashboard(args):
    """rq-dashboard (the `dashboard` extra) on the configured Redis: batch jobs, their progress, workers."""
    settings = config_module.load(args.config)
    if not settings.redis_url:
        raise ConfigError("general_settings.redis_url: the dashboard shows RQ's queues in Redis (or REDIS_URL); "
                          "without Redis batches run in the server process and have no dashboard")
    if not config_module.installed("rq_dashboard"):
        print("deltallm: the dashboard needs rq-dashboard: pip install 'deltallm[dashboard]'", file=sys.stderr)
        return 1
    from rq_dashboard.cli import make_flask_app
    from rq_dashboard.web import setup_rq_connection
    app = make_flask_app(None, None, None, args.url_prefix)
    app.config.update(RQ_DASHBOARD_REDIS_URL=settings.redis_url, DEPRECATED_OPTIONS=[])
    setup_rq_connection(app)
    print(f"deltallm: rq-dashboard on http://{args.host}:{args.port}{args.url_prefix or '/'} for "
          f"{config_module.describe_url(settings.redis_url)} (batch jobs: queue {BATCH_QUEUE})", file=sys.stderr)
    # werkzeug's threaded server, as rq-dashboard's own command runs it: a page for an operator or two
    app.run(host=args.host, port=args.port, threaded=True)
    return 0


def cmd_migrate(args):
    settings = prepare_database(args.config, announce=False)
    if not args.quiet:
        print(f"database ready: {database_line(settings)}")
    return 0


def cmd_check_config(args):
    settings = config_module.load(args.config)
    if settings.path is None:
        print(f"deltallm: no config file found: {settings.searched} (give --config FILE or set "
              "DELTALLM_CONFIG_PATH)", file=sys.stderr)
        return 1
    for line in settings.warnings:
        print(f"deltallm: warning: {line}", file=sys.stderr)
    groups = {m["model_name"] for m in settings.model_list}
    count = len(settings.warnings)
    print(f"config OK: {settings.path}: {len(settings.model_list)} deployments in {len(groups)} model groups"
          + (f", {count} warning{'s' * (count != 1)}" if count else ""))
    return 1 if args.strict and count else 0


def cmd_keys(args):
    from deltallm import keys
    from deltallm.errors import GatewayError
    from deltallm.governance.durations import add_duration
    from deltallm.governance.key_spend import key_spends
    from deltallm.models import ApiKey, utcnow
    from deltallm.schemas.admin import key_create
    from deltallm.schemas.common import load
    settings = prepare_database(args.config)
    if args.keys_command == "create":
        expires = args.expires_at
        fields = {"name": args.name, "models": split(args.models), "rpm_limit": args.rpm,
                  "tpm_limit": args.tpm, "max_budget": args.max_budget,
                  "budget_duration": args.budget_duration,
                  "max_parallel_requests": args.max_parallel_requests,
                  "mcp_servers": split(args.mcp_servers),
                  "expires_at": int(expires) if expires and expires.isdigit() else expires,
                  "duration": args.duration}
        try:  # the same rules as POST /admin/keys
            fields["model_rpm_limit"] = model_limits(args.model_rpm, "--model-rpm")
            fields["model_tpm_limit"] = model_limits(args.model_tpm, "--model-tpm")
            fields = load(key_create, {k: v for k, v in fields.items() if v is not None})
            check_models(settings, fields)
        except GatewayError as exc:
            print(f"deltallm: {exc.message}", file=sys.stderr)
            return 2
        duration = fields.pop("duration", None)
        if duration is not None:
            fields["expires_at"] = add_duration(utcnow(), duration)
        row, plaintext = keys.create_key(**fields)
        print(plaintext)
        print(f"key id: {row.id} (the key is shown only once)", file=sys.stderr)
    elif args.keys_command == "list":
        rows = list(ApiKey.select().where(ApiKey.revoked_at.is_null()).order_by(ApiKey.created_at))
        spends = key_spends(rows)
        if sys.stdout.isatty():
            print("id\tkey_hint\tname\tmodels\tspend\tbudget\tbudget_reset_at")
        for row in rows:
            spent, reset_at = spends[row.id]
            budget = "-" if row.max_budget is None else f"${row.max_budget:g}"
            if row.budget_duration:
                budget += f"/{row.budget_duration}"
            print(f"{row.id}\t{row.key_hint}\t{row.name or ''}\t{','.join(row.models or []) or '*'}\t"
                  f"${spent:.6f}\t{budget}\t{keys.iso(reset_at) or '-'}")
    elif args.keys_command == "revoke":
        done = ApiKey.update(revoked_at=utcnow()).where(
            (ApiKey.id == args.id) & ApiKey.revoked_at.is_null()).execute()
        if not done:
            print(f"no live key with id {args.id}", file=sys.stderr)
            return 1
        print(f"revoked {args.id}")
    return 0


def model_limits(pairs, flag):
    """`["gpt-4o=10", ...]` (repeated `--model-rpm MODEL=N`) as a dict, None when not given."""
    from deltallm.errors import InvalidRequest
    if not pairs:
        return None
    limits = {}
    for pair in pairs:
        name, sep, number = pair.rpartition("=")
        if not sep or not name or not number.isdigit():
            raise InvalidRequest(f"{flag} wants MODEL=N (N a whole number), not '{pair}'")
        limits[name] = int(number)
    return limits


def check_models(settings, fields):
    """Like POST /admin/keys: allowlists and per-model limits name models the gateway serves (config
    groups, their aliases, or deployments added through /admin/models)."""
    from deltallm.db import connection
    from deltallm.errors import InvalidRequest
    from deltallm.models import DeploymentRow
    with connection():
        groups = {m["model_name"] for m in settings.model_list} | {
            row.model_name for row in DeploymentRow.select(DeploymentRow.model_name)}
    aliases = settings.router_settings.get("model_group_alias") or {}
    known = groups | {alias for alias, target in aliases.items() if target in groups}
    for field, flag in (("models", "--models"), ("model_rpm_limit", "--model-rpm"),
                        ("model_tpm_limit", "--model-tpm")):
        unknown = [name for name in fields.get(field) or () if name not in known]
        if unknown:
            raise InvalidRequest(f"{flag}: unknown model '{unknown[0]}' (not in model_list, "
                                 "model_group_alias or /admin/models)")


def split(value):
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def parser():
    p = argparse.ArgumentParser(prog="deltallm", description="OpenAI-compatible LLM gateway")
    p.add_argument("--version", action="version", version=f"deltallm {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, func, help_text):
        sp = sub.add_parser(name, help=help_text)
        sp.add_argument("--config", help="config file (default: $DELTALLM_CONFIG_PATH or ./config.yaml)")
        sp.set_defaults(func=func)
        return sp

    serve = add("serve", cmd_serve, "run the gateway with gunicorn + gevent")
    serve.add_argument("--host", help="default: $DELTALLM_HOST or 0.0.0.0")
    serve.add_argument("--port", type=int, help="default: $PORT or 8000")
    serve.add_argument("--workers", type=int, help="worker processes (default: $WEB_CONCURRENCY or one per CPU)")
    worker = add("worker", cmd_worker, "run an RQ worker for batch jobs")
    worker.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    worker.add_argument("--queue", default=BATCH_QUEUE, help=f"the RQ queue to work on (default: {BATCH_QUEUE})")
    dashboard = add("dashboard", cmd_dashboard, "run rq-dashboard on the configured Redis (batch jobs and workers)")
    dashboard.add_argument("--host", default="127.0.0.1",
                           help="default: 127.0.0.1 (the dashboard has no login: keep it local or behind a proxy)")
    dashboard.add_argument("--port", type=int, default=9181, help="default: 9181")
    dashboard.add_argument("--url-prefix", default="", help="serve under this path, e.g. /rq")
    migrate = add("migrate", cmd_migrate, "create or upgrade the database tables (idempotent)")
    migrate.add_argument("--quiet", action="store_true")
    check = add("check-config", cmd_check_config, "validate the config file and exit")
    check.add_argument("--strict", action="store_true", help="exit 1 when a setting is ignored, too")
    keys = add("keys", cmd_keys, "manage virtual keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    create = ksub.add_parser("create", help="create a key and print it once")
    create.add_argument("--name")
    create.add_argument("--models", help="comma-separated model names (default: all)")
    create.add_argument("--rpm", type=int)
    create.add_argument("--tpm", type=int)
    create.add_argument("--max-budget", type=float)
    create.add_argument("--budget-duration")
    create.add_argument("--max-parallel-requests", type=int)
    create.add_argument("--mcp-servers", help="comma-separated server or server.tool names")
    create.add_argument("--expires-at", help="ISO 8601 time or unix seconds")
    create.add_argument("--duration", help="the key expires this long from now (30s, 12h, 30d, 1mo)")
    create.add_argument("--model-rpm", action="append", metavar="MODEL=N",
                        help="requests per minute on one model (repeatable)")
    create.add_argument("--model-tpm", action="append", metavar="MODEL=N",
                        help="tokens per minute on one model (repeatable)")
    listing = ksub.add_parser("list", help="list live keys with their spend this budget period (never the "
                              "secret); tab-separated: id, key_hint, name, models, spend, budget, "
                              "budget_reset_at")
    revoke = ksub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")
    for sp in (create, listing, revoke):  # accept --config after the subcommand too
        sp.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def main(argv=None):
    try:
        args = parser().parse_args(argv)
        return args.func(args) or 0
    except ConfigError as exc:
        print(f"deltallm: config error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
