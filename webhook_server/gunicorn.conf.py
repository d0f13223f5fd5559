# gunicorn configuration of the webhook server:
#   python -m gunicorn -c webhook_server/gunicorn.conf.py 'webhook_server.app:get_app()'
# (what `tenantctl serve` runs). Knobs come from the environment: see webhook_server/server_config.py and
# .env.example. gunicorn re-reads this file on SIGHUP; the hooks live in webhook_server/server_hooks.py.
import os

from tenancy.settings import load_settings
from webhook_server.server_config import ACCESS_LOG_FORMAT, MULTIPROC_ENV, ServerConfig

# First, before anything imports prometheus_client (it picks its value class at import): metrics are
# shared across workers through this directory. server_hooks wipes it when the master starts.
os.environ.setdefault(MULTIPROC_ENV, str(load_settings().state_dir / "prometheus"))

_server = ServerConfig.from_env()

if _server.worker_class == "gevent":
    # psycopg picks its wait function when first imported, which the master does before any worker
    # patches `select`; wait_select looks the (then patched) select up on each call, so a worker's
    # greenlet waiting on PostgreSQL yields to the others instead of blocking the whole worker.
    os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

from webhook_server import boot_signals, server_hooks  # noqa: E402  (after the environment above is set)

bind = [_server.bind]
workers = _server.workers
# gevent: gunicorn's worker with a deadline per request and load shedding (webhook_server/worker.py).
worker_class = ("webhook_server.worker.DeadlineGeventWorker" if _server.worker_class == "gevent"
                else _server.worker_class)
threads = _server.threads
worker_connections = _server.worker_connections
timeout = _server.timeout
graceful_timeout = _server.graceful_timeout
keepalive = _server.keepalive
proc_name = "tenantctl-webhooks"
preload_app = False  # the app (and its store's writer thread) is built in each worker, after fork
logger_class = "webhook_server.server_hooks.RedactingLogger"
errorlog = "-"
accesslog = _server.access_log
access_log_format = ACCESS_LOG_FORMAT  # no query string: the WhatsApp handshake carries a token there
forwarded_allow_ips = os.environ.get("TENANTCTL_FORWARDED_ALLOW_IPS", "127.0.0.1")
control_socket_disable = True  # one fixed socket path would clash between instances; SIGHUP is our control

on_starting = server_hooks.on_starting
on_reload = server_hooks.on_reload
post_fork = boot_signals.post_fork  # a stop during the boot (webhook_server/boot_signals.py)
when_ready = boot_signals.when_ready  # a SIGHUP held during the start reloads once the master is up
worker_exit = server_hooks.worker_exit
child_exit = server_hooks.child_exit
