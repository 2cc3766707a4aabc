"""socgw: protocol gateway and SOC balancer for microgrid battery fleets."""

__version__ = "0.1.0"
