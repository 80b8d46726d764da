"""Core monitoring modules for aiocop."""
