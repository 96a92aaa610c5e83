"""prewarm: plan which byte ranges a render job will read, and warm them through the caching gateway."""

__version__ = "0.1.0"
