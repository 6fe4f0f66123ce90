"""The NowPayments client's configuration: one frozen value object that never prints a secret."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_API_URL = "https://api.nowpayments.io/v1"


@dataclass(frozen=True, repr=False)
class NowPaymentsConfig:
    """Everything the client needs to talk to NowPayments.

    ``timeout`` is the read timeout and ``connect_timeout`` the connect timeout, both in
    seconds; ``max_retries`` and ``backoff`` govern automatic retries of idempotent reads.
    ``email``/``password`` are the dashboard login used for the JWT that listing and payout
    calls need; ``totp_secret`` is the base32 2FA secret used to verify payouts.
    """

    api_key: str
    api_url: str = DEFAULT_API_URL
    ipn_secret: str = ""
    email: str = ""
    password: str = ""
    totp_secret: str = ""
    timeout: float = 10.0
    connect_timeout: float = 3.05
    max_retries: int = 3
    backoff: float = 0.5
    enabled: bool = True

    @property
    def has_jwt_credentials(self) -> bool:
        return bool(self.email and self.password)

    def __repr__(self) -> str:
        def mark(secret: str) -> str:
            return "'***'" if secret else "''"

        return (
            f"NowPaymentsConfig(api_key={mark(self.api_key)}, api_url={self.api_url!r}, "
            f"ipn_secret={mark(self.ipn_secret)}, email={mark(self.email)}, "
            f"password={mark(self.password)}, totp_secret={mark(self.totp_secret)}, "
            f"timeout={self.timeout!r}, connect_timeout={self.connect_timeout!r}, "
            f"max_retries={self.max_retries!r}, backoff={self.backoff!r}, "
            f"enabled={self.enabled!r})"
        )

    __str__ = __repr__
