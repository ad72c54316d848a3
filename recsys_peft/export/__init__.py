"""Exported ranking models: a folder of safetensors weights and JSON that scoring loads alone."""
