"""Delivery of accepted webhooks to the platform: the worker behind `tenantctl deliver` (docs/delivery.md).

Pure parts: :mod:`delivery.signing` (Standard Webhooks), :mod:`delivery.retry` (backoff, dead-lettering),
:mod:`delivery.destinations` (where each event goes). I/O: :mod:`delivery.worker` (claims from the store,
POSTs through :mod:`outbound.policy`), :mod:`delivery.metrics`. Never imports the webhook server or the
reconciler.
"""
