"""The battery-fleet simulator: pack physics served over Modbus TCP through the profile codec."""
