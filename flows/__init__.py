"""Prefect flows: the end-to-end pipeline and its stages."""
