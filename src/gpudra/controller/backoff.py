"""How long to wait after a failed pass (pure).

Exponential from ``initial_s`` to ``max_s`` over consecutive failures, reset by a success;
when the server said how long to wait (``Retry-After`` on a 429 or 5xx, or a Status's
``retryAfterSeconds``) at least that long, capped at ``max_retry_after_s`` so a bad header
cannot park the controller.  A failed pass is never followed by an immediate retry.
"""

from __future__ import annotations

from gpudra.kube.errors import KubeError


class Backoff:
    def __init__(
        self, *, initial_s: float = 0.5, max_s: float = 30.0, max_retry_after_s: float = 300.0
    ) -> None:
        self.initial_s, self.max_s, self.max_retry_after_s = initial_s, max_s, max_retry_after_s
        self.failures = 0

    def failed(self, error: KubeError) -> float:
        """Seconds to wait before the next pass after this error."""
        self.failures += 1
        own = float(min(self.max_s, self.initial_s * 2.0 ** (self.failures - 1)))
        if error.retry_after is not None:
            return float(max(own, min(error.retry_after, self.max_retry_after_s)))
        return own

    def succeeded(self) -> None:
        self.failures = 0
