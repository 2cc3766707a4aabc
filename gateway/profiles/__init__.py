"""Vendor profiles: loading, validation and the register codec."""

from gateway.profiles.codec import (
    CodecError,
    Value,
    active_labels,
    check_write,
    decode,
    decode_firmware,
    decode_points,
    encode,
    label_of,
)
from gateway.profiles.loader import (
    ProfileError,
    ProfileLibrary,
    default_profile_dirs,
    load_profile,
    validate_profile,
)
from gateway.profiles.model import (
    Access,
    Comms,
    DataType,
    Identify,
    Point,
    Profile,
    Table,
    Variant,
    Version,
    VersionRange,
    WordOrder,
)
from gateway.profiles.plan import ReadBlock, plan_reads, split_block
from gateway.profiles.schema import profile_schema, schema_text
from gateway.profiles.vocabulary import CANONICAL_STATES, REQUIRED_POINTS, VOCABULARY, PointSpec

__all__ = [
    "CANONICAL_STATES",
    "REQUIRED_POINTS",
    "VOCABULARY",
    "Access",
    "CodecError",
    "Comms",
    "DataType",
    "Identify",
    "Point",
    "PointSpec",
    "Profile",
    "ProfileError",
    "ProfileLibrary",
    "ReadBlock",
    "Table",
    "Value",
    "Variant",
    "Version",
    "VersionRange",
    "WordOrder",
    "active_labels",
    "check_write",
    "decode",
    "decode_firmware",
    "decode_points",
    "default_profile_dirs",
    "encode",
    "label_of",
    "load_profile",
    "plan_reads",
    "profile_schema",
    "schema_text",
    "split_block",
    "validate_profile",
]
