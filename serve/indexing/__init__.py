"""Index building: corpus readers, the build itself, and embedding over a Ray cluster."""
