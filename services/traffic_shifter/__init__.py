"""Sluice traffic-shifter service."""
