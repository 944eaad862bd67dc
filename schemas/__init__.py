"""Avro schemas of idlewire's events: the `.avsc` files beside this module are the source of truth.

`events` holds the typed mirrors of the records; `codec` frames them as Avro single-object
encoding (docs/decisions.md, "Event framing").
"""
