"""Source backends."""
