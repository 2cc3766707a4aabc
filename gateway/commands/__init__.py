"""`socgw` sub-commands: one module per command family, each exposing `register(subparsers)`."""
