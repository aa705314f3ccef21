"""EmberFS package."""
