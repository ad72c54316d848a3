"""Low-rank adapters per user segment, and the freezing checks around them."""
