"""Every cap of the status app, in one place so the table logic and the HTTP layer agree.

The table keeps one value per tenant holding all of that tenant's mailbox rows, and Faust writes
the whole value to the changelog on every update. One record must stay under 1,000,000 bytes
(Faust's default `producer_max_request_size`; Kafka's default `max.message.bytes` is 1 MiB).
tests/streams/test_status.py builds a tenant of MAX_MAILBOXES_PER_TENANT worst-case rows (every
string at the producers' maximum length, every cap below reached) and checks that it fits.
A typical row is ~220 bytes (docs/streams.md).
"""

# Mailbox rows one tenant value may hold. Events for further mailboxes are counted in
# `untracked_events`, never silently lost. Tenants with more mailboxes need the table keyed by
# (tenant, mailbox) instead (docs/streams.md, "Table layout and keys").
MAX_MAILBOXES_PER_TENANT = 300
# (folder, UIDVALIDITY) pairs whose counted UIDs a row remembers; the least recently used goes.
# A mailbox watches one folder, so two cover one UIDVALIDITY change.
MAX_TRACKED_FOLDERS = 2
# Disjoint UID ranges remembered per folder. UIDs grow, so new mail usually extends one range; when
# there are more, the two ranges with the smallest gap are merged (see streams.seen_uids).
MAX_UID_RANGES = 8
# Characters of an error reason or error class kept in a row (producers' reasons can quote
# server responses).
MAX_ERROR_TEXT_CHARS = 300
# Longest email_type accepted in a URL (the producers' own limit); longer ones get 404.
MAX_EMAIL_TYPE_CHARS = 100
# Seconds a worker waits for another worker (forwarded query, admin fan-out) before answering 503.
PEER_TIMEOUT_SECONDS = 5.0
