"""Errors the sandbox answers with: the NowPayments envelope and the control API's own."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error in NowPayments' envelope ``{status: false, statusCode, code, message}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "status": False,
            "statusCode": self.status,
            "code": self.code,
            "message": self.message,
        }


def invalid_params(message: str) -> ApiError:
    return ApiError(400, "INVALID_REQUEST_PARAMS", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


class ControlError(Exception):
    """An error of the control API: plain ``{"error": code, "message": ...}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message}


def invalid_transition(message: str) -> ControlError:
    return ControlError(409, "invalid_transition", message)
