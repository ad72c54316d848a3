"""Saved base models and adapters: safetensors weights beside JSON metadata."""
