"""Server-side errors, by whose fault they are.

ServerError
├── RequestError     the client sent something we refuse (4xx, carries a machine code)
└── SetupError       the operator's input (CSV, CLI arguments, plan values) is wrong
"""

from __future__ import annotations


class ServerError(Exception):
    pass


class RequestError(ServerError):
    def __init__(
        self, status: int, code: str, detail: str, extra: dict[str, int] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra or {}


class SetupError(ServerError):
    pass
