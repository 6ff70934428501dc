"""The engine: stream, hash, verify and rename, one file at a time or many at once."""
