"""Sluice webhook-runner service."""
