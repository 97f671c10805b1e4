"""The engine: requests in, tokens out, knowing nothing of HTTP or of either schema."""
