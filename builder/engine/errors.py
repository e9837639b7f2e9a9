"""The errors an endpoint raises; the server answers them in docker's shape."""

from __future__ import annotations


class ApiError(Exception):
    """An HTTP error reply: ``{"message": ...}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(what: str) -> ApiError:
    return ApiError(404, what)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)
