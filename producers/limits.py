"""Every size and count cap of the producer, in one place so the parsers cannot drift apart."""

# Header bytes fetched per message (Message-ID, From, Subject, Date). Anything beyond is cut.
MAX_HEADER_BYTES = 16 * 1024
# UIDs fetched per UID FETCH round; a mailbox with a larger backlog is drained in several rounds.
FETCH_BATCH = 200
# Longest header value kept in an event (Subject, From); longer ones are truncated.
MAX_HEADER_VALUE_CHARS = 2048
# Seconds a single IMAP command may take before the connection is considered broken.
COMMAND_TIMEOUT_SECONDS = 30.0
# Seconds the TCP connect plus TLS handshake plus greeting may take.
CONNECT_TIMEOUT_SECONDS = 15.0
# Events a session may have in flight to Kafka before it waits for acknowledgements.
MAX_INFLIGHT_EVENTS = 1000
# Longest response line without CRLF kept in memory before the connection is dropped.
MAX_LINE_BYTES = 1024 * 1024
# Largest literal a server may announce ({N}) before the connection is dropped.
MAX_LITERAL_BYTES = 8 * 1024 * 1024
# Read buffer of asyncio's TLS layer per connection (asyncio.sslproto.SSLProtocol.max_size, 256 KiB
# by default and held for the connection's whole life: ~300 KiB RSS per idle TLS mailbox).
# Any size is correct (records are reassembled in OpenSSL's memory BIO; a large response only
# takes more recv calls). 1 KiB: 3 KiB less per connection than 4 KiB, about twice the CPU per
# MiB received (~30 ms per MiB), irrelevant for header-sized fetches (docs/benchmarks.md,
# `python -m bench.tls_memory`).
TLS_READ_BUFFER_BYTES = 1024
# Distinct CAPABILITY lists remembered (connections to one server share one set).
MAX_CAPABILITY_SETS = 64
# Bytes of untagged responses kept for one command (a UID FETCH keeps FETCH_BATCH messages).
MAX_COMMAND_RESPONSE_BYTES = 16 * 1024 * 1024
