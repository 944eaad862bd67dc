"""The local stack: real Apache Kafka, PostgreSQL and Dovecot on loopback, no Docker.

Everything here is standard library only, so it runs before the project's virtualenv exists.
`python -m infra up` installs what is missing, starts the services idempotently and prints
`KEY=value` settings; `python -m infra down` stops them.
"""
