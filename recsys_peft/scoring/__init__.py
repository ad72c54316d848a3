"""Batch scoring: chunked top-K over the catalogue with exclusions, fallbacks and atomic output."""
