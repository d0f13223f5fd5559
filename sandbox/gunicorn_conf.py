"""gunicorn settings of `tenantctl sandbox serve` that its command line cannot give: the hooks. The rest is on
the command line (tenantctl/commands/sandbox.py), which wins over this file."""

from webhook_server.boot_signals import post_fork

__all__ = ["post_fork"]
