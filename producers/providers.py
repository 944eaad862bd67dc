"""What idlewire knows about the big mail providers, as data (one place; sources in comments).

The client speaks plain IMAP to any compliant server; a preset only fills in defaults and limits.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Provider:
    name: str
    host: str
    port: int = 993
    # Simultaneous IMAP connections one account may hold (shared with the user's own clients).
    max_connections_per_account: int | None = None
    # Re-issue IDLE at least this often (RFC 2177 says 29 minutes; some servers drop sooner).
    idle_renew_seconds: float = 1740
    oauth_token_url: str | None = None
    oauth_scopes: tuple[str, ...] = ()
    notes: str = ""


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider(
            "gmail",
            "imap.gmail.com",
            max_connections_per_account=15,  # "Too many simultaneous connections" past ~15
            oauth_token_url="https://oauth2.googleapis.com/token",
            oauth_scopes=("https://mail.google.com/",),
            notes="XOAUTH2 or OAUTHBEARER; watch INBOX or [Gmail]/All Mail",
        ),
        Provider(
            "microsoft365",
            "outlook.office365.com",
            max_connections_per_account=20,
            # IDLE reported to hang after 1-2 h: renew well before that.
            idle_renew_seconds=1500,
            oauth_token_url="https://login.microsoftonline.com/common/oauth2/v2.0/token",
            oauth_scopes=("https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"),
            notes="'BAD User is authenticated but not connected' = wrong scopes or reconnect storm",
        ),
        Provider(
            "yahoo",
            "imap.mail.yahoo.com",
            idle_renew_seconds=180,  # Yahoo needs re-IDLE every 3 minutes
        ),
        Provider("icloud", "imap.mail.me.com", notes="app-specific passwords; no OAuth for IMAP"),
    )
}
