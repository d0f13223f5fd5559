"""The outbound tests' fixtures: the delivery tests' migrated database, for the worker-level tests."""

from __future__ import annotations

from ..delivery.conftest import db

__all__ = ["db"]
