"""Southbound adapters (field devices)."""
