"""tenantctl: config-as-code for the integrations of a multi-tenant rental platform (README.md)."""

from tenantctl.argv import command_word, own_argv
from webhook_server.boot_signals import hold_hangups

# The process's first line: `serve` and `deliver` reload on SIGHUP, and `sandbox serve` is a gunicorn; none of
# them has its handler before its imports (and serve's tenant load) are done, and until then a SIGHUP killed it.
if (_argv := own_argv()) is not None and command_word(_argv) in ("serve", "deliver", "sandbox"):
    hold_hangups()
