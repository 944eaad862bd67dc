"""The faust-streaming status app: per-tenant status tables built from the producers' events,
served over HTTP by every worker (docs/streams.md).

Pure modules hold the logic and formats (status, seen_uids, changelog_format, render, limits);
app wires Faust topics, agents and the table; http_api, routing and credentials are the HTTP
edge; _kafka and _faust_transport are the Kafka edge; `python -m streams worker` runs a worker
and `python -m streams.bench` measures one.
"""
