"""The domain errors of the payments app, each with a stable machine-readable code."""

from __future__ import annotations


class PaymentsError(Exception):
    """Base of every error the payments app raises on purpose.

    ``code`` is stable and machine-readable (API bodies, admin messages, logs);
    ``message`` is a sentence for a person.
    """

    code = "payments_error"
    status_code = 400

    def __init__(self, message: str = "", **context: object) -> None:
        self.message = message or self.__class__.__doc__ or self.code
        self.context = context
        super().__init__(self.message)

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


class InsufficientFunds(PaymentsError):
    """The balance does not cover this debit."""

    code = "insufficient_funds"
    status_code = 409


class DebtOutstanding(PaymentsError):
    """The user owes money (a refunded deposit) and may not withdraw until it is paid."""

    code = "debt_outstanding"
    status_code = 409


class InvalidAmount(PaymentsError):
    """The amount is not a valid positive amount in USD cents."""

    code = "invalid_amount"


class InvalidAddress(PaymentsError):
    """The wallet address is not valid for this currency."""

    code = "invalid_address"


class IdempotencyConflict(PaymentsError):
    """A posting with this idempotency key already exists with different terms."""

    code = "idempotency_conflict"
    status_code = 409


class IdempotencyKeyInvalid(PaymentsError):
    """The Idempotency-Key header must be 1 to 255 printable ASCII characters, no spaces."""

    code = "invalid_idempotency_key"


class IdempotencyKeyReused(PaymentsError):
    """This Idempotency-Key was already used with another request (method, path or body)."""

    code = "idempotency_key_reused"
    status_code = 409


class IdempotencyInProgress(PaymentsError):
    """A request with this Idempotency-Key is still being processed: retry in a moment."""

    code = "idempotency_in_progress"
    status_code = 409


class IdempotentRequestFailed(PaymentsError):
    """The first request with this Idempotency-Key failed after it had changed data, so it is
    not run again: look at its result (your payments, withdrawals) before using a new key."""

    code = "idempotent_request_failed"
    status_code = 500


class ChainBroken(PaymentsError):
    """The given balance_after does not continue the user's ledger chain."""

    code = "chain_broken"
    status_code = 409


class InvalidTransition(PaymentsError):
    """The object cannot move from its current status to the requested one."""

    code = "invalid_transition"
    status_code = 409


class AmountBelowMinimum(PaymentsError):
    """The amount is below the minimum for this currency."""

    code = "amount_below_minimum"


class FeesExceedAmount(InvalidAmount):
    """The fees of this withdrawal take all of its amount: nothing would be paid out."""

    code = "fees_exceed_amount"


class ExtraIdRequired(InvalidAddress):
    """Payouts in this currency need a memo (destination tag) beside the address."""

    code = "extra_id_required"


class CurrencyUnavailable(PaymentsError):
    """The currency is unknown or switched off."""

    code = "currency_unavailable"


class CurrencyTermsFromProvider(PaymentsError):
    """This currency's withdrawal fee and minimum come from NowPayments, not from an edit."""

    code = "currency_terms_from_provider"
    status_code = 409


class PermissionDenied(PaymentsError):
    """The acting user may not do this."""

    code = "permission_denied"
    status_code = 403


class ConfigurationError(PaymentsError):
    """The payments app is not configured correctly."""

    code = "configuration_error"
    status_code = 500


class ProviderError(PaymentsError):
    """Base of the errors that come from talking to NowPayments."""

    code = "provider_error"
    status_code = 502
    # True when NowPayments provably did nothing for the call: its request never went out (the
    # login it needed failed first) or NowPayments refused it as unauthenticated (HTTP 401).
    # A create that failed so is known not to exist; any other failed create may.
    no_effect = False


class ProviderUnavailable(ProviderError):
    """NowPayments did not answer usefully (timeout, connection error, 5xx, 429); retry later."""

    code = "provider_unavailable"
    status_code = 503
    retryable = True

    def __init__(self, message: str = "", *, retry_after: float | None = None, **context: object):
        super().__init__(message, **context)
        self.retry_after = retry_after


class ProviderRejected(ProviderError):
    """NowPayments refused the request (4xx); retrying the same request will not help."""

    code = "provider_rejected"
    status_code = 502
    retryable = False

    def __init__(
        self,
        message: str = "",
        *,
        provider_code: str = "",
        http_status: int | None = None,
        **context: object,
    ) -> None:
        super().__init__(message, **context)
        self.provider_code = provider_code
        self.http_status = http_status

    def as_dict(self) -> dict[str, object]:
        body = super().as_dict()
        body["provider_code"] = self.provider_code
        return body


class UnknownProviderStatus(ProviderError):
    """NowPayments reported a status this client does not know; it refuses to guess."""

    code = "unknown_provider_status"

    def __init__(self, message: str = "", *, provider_status: str = "", **context: object) -> None:
        super().__init__(message, **context)
        self.provider_status = provider_status


class InvalidEventBody(PaymentsError):
    """The IPN body is not a JSON object."""

    code = "invalid_body"


class EventNotFound(PaymentsError):
    """No stored provider event has this id."""

    code = "event_not_found"
    status_code = 404


class InvalidQrSize(PaymentsError):
    """A QR code's size is a whole number of pixels from 50 to 1000."""

    code = "invalid_qr_size"


class InvalidWebhookEndpoint(PaymentsError):
    """A webhook endpoint needs an http(s) URL, known event types and a long enough secret."""

    code = "invalid_webhook_endpoint"


class ApiKeyNotFound(PaymentsError):
    """No API key of yours has this id."""

    code = "api_key_not_found"
    status_code = 404


class ApiKeyLimitReached(PaymentsError):
    """You have as many active API keys as allowed: revoke one before creating another."""

    code = "api_key_limit_reached"
    status_code = 409


class InvalidApiKeyName(PaymentsError):
    """An API key needs a name of 1 to 100 characters."""

    code = "invalid_api_key_name"


class InvalidFilter(PaymentsError):
    """A filter or paging parameter of the request has a value it cannot take."""

    code = "invalid_filter"
