"""One module per section of the descriptor language (see descriptors.loader, which runs them in order)."""
