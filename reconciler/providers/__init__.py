"""reconciler/providers."""
