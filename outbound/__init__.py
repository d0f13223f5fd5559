"""Outbound HTTP rules shared by every client that calls out: allow-list, https only, timeouts, no redirects,
a response size cap (see :mod:`outbound.policy`)."""
