"""Errors raised by the handset shell (store, transport, Agent), by whose fault they are.

    AgentError
    ├── NotProvisioned      this handset has no identity yet: run provisioning first
    ├── OperationFrozen     the caller tried to change an operation whose send has started
    ├── InvalidOperation    the caller's values do not make a valid operation
    ├── TransientError      the link or the server failed; retrying later is safe and expected
    ├── HttpProtocolError   a response is not HTTP/1.1 the handset can read (the transport
    │                       turns it into TransientError: the server's or the link's fault)
    └── ServerRefused       the server answered 4xx: this request will not succeed as it is

Wire-level problems (`agent_client.protocol.errors.ProtocolError`) are wrapped in
`ServerRefused` when the server names them, and in `TransientError` when a response body
is garbled in transit.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of everything the handset shell raises on purpose."""


class NotProvisioned(AgentError):
    pass


class OperationFrozen(AgentError):
    pass


class InvalidOperation(AgentError):
    pass


class TransientError(AgentError):
    pass


class HttpProtocolError(AgentError):
    pass


class ServerRefused(AgentError):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail

    def __reduce__(self) -> tuple[type[ServerRefused], tuple[int, str, str]]:
        # rebuilt from its fields, so it crosses process boundaries (worker pools) intact
        return (type(self), (self.status, self.code, self.detail))
