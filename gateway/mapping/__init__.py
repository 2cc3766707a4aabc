"""Point maps (`mappings/`): which fleet quantity each DNP3 point or IEC 61850 attribute publishes."""
