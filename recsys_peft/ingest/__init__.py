"""Ingest: raw interaction logs to a validated, time-ordered parquet store with an id vocabulary."""
