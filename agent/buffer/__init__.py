"""The buffer: the block wire format, retention rules, the SQLite store and the block builder."""
