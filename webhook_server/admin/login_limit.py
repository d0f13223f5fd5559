"""Failed admin logins, counted per client address: after ``max_failures`` in ``window_s`` seconds that
address is refused (429 with Retry-After) until the window that started with its first failure ends.

Pure bookkeeping with a lock; memory is bounded (``max_addresses``: the oldest windows are forgotten
first), so a flood from many addresses cannot grow it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class LoginLimiter:
    def __init__(self, max_failures: int = 10, window_s: float = 60.0, max_addresses: int = 10_000) -> None:
        self.max_failures, self.window_s, self.max_addresses = max_failures, window_s, max_addresses
        self._lock = threading.Lock()
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()  # address → (window start, failures)
        self.failures_total = 0
        self.refused_total = 0

    def retry_after(self, address: str, now: float) -> int | None:
        """Seconds until ADDRESS may try again, or None when it may now."""
        with self._lock:
            start, failures = self._windows.get(address, (now, 0))
            if now - start >= self.window_s or failures < self.max_failures:
                return None
            self.refused_total += 1
            return max(1, int(start + self.window_s - now + 0.999))

    def failed(self, address: str, now: float) -> int:
        """Count a failed login of ADDRESS; returns its failures in the current window."""
        with self._lock:
            self.failures_total += 1
            start, failures = self._windows.pop(address, (now, 0))
            if now - start >= self.window_s:
                start, failures = now, 0
            self._windows[address] = (start, failures + 1)
            while len(self._windows) > self.max_addresses:
                self._windows.popitem(last=False)
            return failures + 1


__all__ = ["LoginLimiter"]
