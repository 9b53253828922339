"""Sluice analyzer service."""
