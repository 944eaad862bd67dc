"""The IDLE producer: holds IMAP IDLE connections and publishes new-mail and state events to Kafka.

Pure modules (states, backoff, checkpoint, errors, imap_responses, mail, limits) hold the
protocol and policy logic; `_imap` and `_kafka` are the only modules that talk to the outside,
and `session` is the thin async loop that drives one mailbox.
"""
