"""Vendor profiles: loading, validation and the register codec."""
