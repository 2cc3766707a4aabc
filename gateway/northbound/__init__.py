"""Northbound adapters (SCADA masters)."""
