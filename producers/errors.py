"""The producer's error tree. Each error says what the session loop must do about it.

The loop asks `error.action`; it never inspects message text. Messages never contain secrets.
"""

from __future__ import annotations

import enum


class Action(enum.Enum):
    RECONNECT = "reconnect"  # transient: back off, then connect again
    STOP = "stop"  # needs a person (wrong password, bad config): report and stop retrying


class IdlewireError(Exception):
    action: Action = Action.RECONNECT

    @property
    def error_class(self) -> str:
        return type(self).__name__


class ConnectFailed(IdlewireError):
    """TCP connect refused, DNS failure, connect timeout."""


class ConnectionLost(IdlewireError):
    """The server closed the connection, or it went silent past the heartbeat bound."""


class ProtocolError(IdlewireError):
    """The server said something we cannot accept (BAD, malformed or oversized responses)."""


class CommandFailed(IdlewireError):
    """A command got NO (e.g. SELECT of a folder being rebuilt): reconnecting may fix it."""


class TLSFailed(IdlewireError):
    """Handshake or certificate verification failed: a configuration problem, not a glitch."""

    action = Action.STOP


class AuthenticationFailed(IdlewireError):
    """The server rejected the credentials. Retrying would only hammer it and lock the account."""

    action = Action.STOP


class TokenRejected(AuthenticationFailed):
    """The server rejected an OAuth access token. The session refreshes once and retries; a
    second rejection stops the mailbox like any authentication failure."""


class OAuthError(IdlewireError):
    """The token endpoint could not give us a token."""


class TokenEndpointUnavailable(OAuthError):
    """Network error, timeout or 5xx from the token endpoint: back off and try again."""


class ConsentRequired(OAuthError):
    """`invalid_grant`: the refresh token was revoked or expired. Only the tenant can fix it by
    granting access again; retrying would never help."""

    action = Action.STOP


class OAuthClientRejected(OAuthError):
    """`invalid_client` / `unauthorized_client`: our client id or secret is wrong."""

    action = Action.STOP


class ConfigurationError(IdlewireError):
    """The mailbox's configuration cannot work (folder missing, no usable auth mechanism)."""

    action = Action.STOP
