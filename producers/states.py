"""The mailbox connection state machine: the seven states and the one table of legal moves."""

from __future__ import annotations

import dataclasses

from schemas.events import ConnectionState

S = ConnectionState

# Every legal transition, and only those. `error` means "the last attempt failed" (the event says
# why and whether we retry); `disconnected` means "not connected on purpose or not yet started".
TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    S.DISCONNECTED: frozenset({S.CONNECTING}),
    S.CONNECTING: frozenset({S.CONNECTED, S.ERROR, S.DISCONNECTED}),
    S.CONNECTED: frozenset({S.AUTHENTICATING, S.ERROR, S.DISCONNECTED}),
    S.AUTHENTICATING: frozenset({S.AUTHENTICATED, S.ERROR, S.DISCONNECTED}),
    S.AUTHENTICATED: frozenset({S.IDLE, S.ERROR, S.DISCONNECTED}),
    S.IDLE: frozenset({S.ERROR, S.DISCONNECTED}),
    S.ERROR: frozenset({S.CONNECTING, S.DISCONNECTED}),
}


class IllegalTransition(RuntimeError):
    """A bug: the session loop tried a move the table does not allow."""


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    previous: ConnectionState
    state: ConnectionState
    sequence: int
    reason: str | None = None
    error_class: str | None = None


class StateMachine:
    """Current state and transition counter; `move` checks the table, returns the transition."""

    def __init__(self) -> None:
        self.state = S.DISCONNECTED
        self.sequence = 0

    def move(
        self, to: ConnectionState, reason: str | None = None, error_class: str | None = None
    ) -> Transition:
        if to not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.state} -> {to}")
        previous, self.state = self.state, to
        self.sequence += 1
        return Transition(previous, to, self.sequence, reason, error_class)
