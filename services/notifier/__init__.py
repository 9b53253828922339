"""Sluice notifier service."""
