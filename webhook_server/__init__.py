"""webhook_server: the Falcon app that receives every provider's webhooks for every tenant.

Modules: ``verify`` (pure sender checks), ``events`` (pure: event IDs, routing keys), ``routing`` (slug →
secrets and routing keys; the process-wide holder), ``pipeline`` (the ordered steps), ``resources`` and
``app`` (Falcon: ``create_app`` / ``get_app``), ``metrics`` (Prometheus), ``storage`` (admin/readiness
reads), ``server_config`` / ``server_hooks`` / ``gunicorn.conf.py`` (running it under gunicorn).
"""
