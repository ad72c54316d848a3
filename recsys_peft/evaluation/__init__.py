"""Offline evaluation: full-catalogue ranking metrics and bootstrap confidence intervals."""
