"""Examples that end each command's --help: real invocations, two or three per command.

Keyed by the command's path ("plan", "state list"); "" is `tenantctl` itself. cli.py attaches them as
epilogs; tests/cli/test_help.py checks that every command has some.
"""

from __future__ import annotations

EXAMPLES: dict[str, tuple[str, ...]] = {
    "": ("tenantctl --tenants examples validate", "tenantctl plan --sandbox",
         "tenantctl --install-completion"),
    "validate": ("tenantctl validate", "tenantctl validate tenants/acme.yaml --format json"),
    "keygen": ("tenantctl keygen --out ~/.config/sops/age/keys.txt",
               "tenantctl keygen --out ops.agekey && export SOPS_AGE_KEY_FILE=$PWD/ops.agekey"),
    "new": ('tenantctl new acme --name "Acme Stays"', "tenantctl --tenants ./tenants new blue-harbor"),
    "show": ("tenantctl show acme", "tenantctl show acme --format json"),
    "list": ("tenantctl list", "tenantctl --tenants examples list"),
    "plan": ("tenantctl plan", "tenantctl plan -t acme -p nuki --format json",
             "tenantctl plan --out plan.json && tenantctl apply plan.json"),
    "apply": ("tenantctl apply plan.json", "tenantctl apply -t acme --auto-approve",
              "tenantctl --tenants examples apply --sandbox"),
    "health": ("tenantctl health", "tenantctl health -t acme -p whatsapp --quiet"),
    "adopt": ("tenantctl state list -t acme -p nuki", "tenantctl adopt 'nuki.keypad_code[acme/17010001/~4]'",
              "tenantctl adopt --cancel 'nuki.keypad_code[acme/17010001/~4]'"),
    "import": ("tenantctl import 'nuki.keypad_code[acme/17010001/~4]'",
               "tenantctl import 'nuki.keypad_code[acme/17010001/~4]' --sandbox"),
    "serve": ("tenantctl serve --bind 127.0.0.1:8080", "tenantctl serve --worker-class gthread --threads 8"),
    "db": ("tenantctl db upgrade", "tenantctl db current"),
    "db upgrade": ("tenantctl db upgrade",
                   "DATABASE_URL=postgresql+psycopg://ops@db.internal:5432/tenantctl tenantctl db upgrade"),
    "db current": ("tenantctl db current",
                   "DATABASE_URL=postgresql+psycopg://ops@db.internal:5432/tenantctl tenantctl db current"),
    "webhooks": ("tenantctl webhooks log --tenant acme --since 24h", "tenantctl webhooks stats"),
    "webhooks log": ("tenantctl webhooks log --tenant acme --since 24h",
                     "tenantctl webhooks log --rejected --format json",
                     "tenantctl webhooks log --state pending --state retrying --provider whatsapp"),
    "webhooks stats": ("tenantctl webhooks stats", "tenantctl webhooks stats --window 7d --format json"),
    "webhooks prune": ("tenantctl webhooks prune --older-than 30d", "tenantctl webhooks prune --older-than 90d"),
    "sandbox": ("tenantctl sandbox serve &", "tenantctl --tenants examples sandbox seed"),
    "sandbox serve": ("tenantctl sandbox serve", "tenantctl sandbox serve --port 8791 --state world.json"),
    "sandbox platform": ("tenantctl sandbox platform",
                         "tenantctl sandbox platform --port 8795 --access-log"),
    "sandbox seed": ("tenantctl --tenants examples sandbox seed",
                     "tenantctl --tenants examples sandbox seed --clean --out world.json"),
    "lock": ("tenantctl lock list", "tenantctl lock release acme"),
    "lock list": ("tenantctl lock list",
                  "DATABASE_URL=postgresql+psycopg://ops@db.internal/tenantctl tenantctl lock list"),
    "lock release": ("tenantctl lock list", "tenantctl lock release acme"),
    "state": ("tenantctl state list", "tenantctl state show 'nuki.lock[acme/17010001]'"),
    "state list": ("tenantctl state list", "tenantctl state list -t acme -p nuki --format json",
                   "tenantctl --tenants examples state list --sandbox"),
    "state show": ("tenantctl state show 'nuki.lock[acme/17010001]'",
                   "tenantctl state show 'nuki.keypad_code[acme/17010001/maria]' --format json"),
    "access": ("tenantctl access matrix acme --at '2026-12-24 22:00'", "tenantctl access rotate acme maria --keypad"),
    "access matrix": ("tenantctl access matrix", "tenantctl access matrix acme --at '2026-12-24 22:00'",
                      "tenantctl access matrix acme --format markdown"),
    "access qr": ("tenantctl access qr acme maria --out ~/maria.svg",
                  "tenantctl access qr acme maria --out ~/Desktop/maria.png"),
    "access rotate": ("tenantctl access rotate acme maria", "tenantctl access rotate acme maria --keypad --reveal"),
    "access maintenance": ("tenantctl access maintenance acme old-town --for 2h",
                           "tenantctl access maintenance acme old-town --for 1d --name plumber"),
    "deliver": ("tenantctl deliver", "tenantctl deliver --concurrency 32 --metrics-port 9101",
                "tenantctl deliver --until-idle"),
    "provider-state": ("tenantctl provider-state list", "tenantctl provider-state forget acme nuki.webhook_secret"),
    "provider-state list": ("tenantctl provider-state list", "tenantctl provider-state list --format json"),
    "provider-state forget": ("tenantctl provider-state forget acme nuki.webhook_secret",
                              "tenantctl provider-state forget acme nuki.webhook_secret && tenantctl apply"),
    "runs": ("tenantctl runs list", "tenantctl runs show 42"),
    "runs list": ("tenantctl runs list", "tenantctl runs list -n 5 --format json"),
    "runs show": ("tenantctl runs show 42", "tenantctl runs show 42 --format json"),
    "simulate": ("tenantctl simulate booking acme", "tenantctl simulate booking acme --server http://127.0.0.1:8000"),
    "simulate booking": ("tenantctl simulate booking acme",
                         "tenantctl simulate booking acme --server https://ops.example.com"),
    "webhooks attempts": ("tenantctl webhooks attempts 1234", "tenantctl webhooks log --tenant acme"),
    "webhooks replay": ("tenantctl webhooks replay 1234", "tenantctl webhooks replay --dead",
                        "tenantctl webhooks replay --tenant acme --provider hospitable --since 24h"),
}


def epilog(path: str) -> str | None:
    """The examples of one command as an epilog, or None when it has none."""
    examples = EXAMPLES.get(path)
    if not examples:
        return None
    # "\b" keeps click from rewrapping the lines into one paragraph.
    return "Examples:\n\n\b\n" + "\n".join(f"  $ {e}" for e in examples)
