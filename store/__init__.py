"""store: the shared database of tenantctl (SQLAlchemy Core + Alembic).

Modules: ``engine`` (make_engine, redact_url), ``schema`` (tables), ``migrate`` (Alembic, in code),
``webhook_log`` (the webhook write path and its reads), ``runs`` (plan/apply history), ``locks``
(per-tenant locks), ``errors`` (the error tree).
"""
