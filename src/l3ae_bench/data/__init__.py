"""Dataset loaders: each reads raw files and returns a validated `Interactions`."""
