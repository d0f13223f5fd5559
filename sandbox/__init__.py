"""sandbox: stateful local emulators of the provider APIs, for tests, benchmarks and demos.

One Falcon app (`sandbox.app.create_app(world)`, gunicorn: `sandbox.app:get_app()`) serves every
provider under its own prefix, following the real paths, payloads, errors, paging and rate limits:

    /meta/v23.0/...        Meta Graph API (WhatsApp)       sandbox/meta.py
    /nuki/...              Nuki Web API                     sandbox/nuki.py
    /hospitable/v2/...     Hospitable public API v2         sandbox/hospitable.py
    /beds24/v2/...         Beds24 API v2 (read-only)        sandbox/beds24.py
    /2n/{device}/api/...   2N intercom HTTP API (Digest)    sandbox/twon.py
    /_sandbox/...          admin: state, reset, faults, call log

`World` (sandbox/world.py) holds all state, JSON in and out; `sandbox.transport.sandbox_transport`
runs the app in-process behind httpx with latency and injected faults (sandbox/faults.py);
`sandbox.spec_check.SpecCheckingTransport` validates exchanges against the providers' published specs.
Nothing outside tests and the CLI imports this package.
"""
