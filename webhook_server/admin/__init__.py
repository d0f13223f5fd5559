"""The Integrations page: server-rendered, read-only, behind the admin token (see resources.py)."""

from webhook_server.admin.resources import register

__all__ = ["register"]
