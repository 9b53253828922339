"""Sluice watcher service."""
