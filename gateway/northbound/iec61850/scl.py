"""SCL ICD writer: describes exactly the model the MMS server exposes for a site.

libiec61850 cannot write SCL, so socgw does (notes/iec61850.md). The data attributes are read back from
the built libiec61850 model (so the ICD cannot drift from what the server serves); the CDC of each data
object, the enumerations, the datasets and the report control blocks come from the same plan the model
was built from. Type ids are derived from the structure (a digest), so equal structures share one
LNodeType/DOType/DAType and the file is stable from run to run.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyiec61850.pyiec61850 as iec

from gateway import __version__
from gateway.mapping.iec61850 import REPORT_OPTIONS, TRIGGERS, DataObjectSpec, DeviceSpec, ReportSpec
from gateway.northbound.iec61850.model import CONF_REV, BuiltModel, FixedValue, rpt_id_of
from gateway.northbound.iec61850.plan import ModelPlan, PlannedDevice

SCL_NS = "http://www.iec.ch/61850/2003/SCL"
ACCESS_POINT = "AP1"

# libiec61850 attribute types → SCL basic types (IEC 61850-6).
BASIC_TYPES: Mapping[int, str] = {
    iec.IEC61850_BOOLEAN: "BOOLEAN",
    iec.IEC61850_INT8: "INT8",
    iec.IEC61850_INT16: "INT16",
    iec.IEC61850_INT32: "INT32",
    iec.IEC61850_INT64: "INT64",
    iec.IEC61850_INT128: "INT128",
    iec.IEC61850_INT8U: "INT8U",
    iec.IEC61850_INT16U: "INT16U",
    iec.IEC61850_INT24U: "INT24U",
    iec.IEC61850_INT32U: "INT32U",
    iec.IEC61850_FLOAT32: "FLOAT32",
    iec.IEC61850_FLOAT64: "FLOAT64",
    iec.IEC61850_ENUMERATED: "Enum",
    iec.IEC61850_CODEDENUM: "Dbpos",
    iec.IEC61850_OCTET_STRING_6: "Octet6",
    iec.IEC61850_OCTET_STRING_8: "Octet8",
    iec.IEC61850_OCTET_STRING_64: "Octet64",
    iec.IEC61850_VISIBLE_STRING_32: "VisString32",
    iec.IEC61850_VISIBLE_STRING_64: "VisString64",
    iec.IEC61850_VISIBLE_STRING_65: "VisString65",
    iec.IEC61850_VISIBLE_STRING_129: "VisString129",
    iec.IEC61850_VISIBLE_STRING_255: "VisString255",
    iec.IEC61850_UNICODE_STRING_255: "Unicode255",
    iec.IEC61850_TIMESTAMP: "Timestamp",
    iec.IEC61850_QUALITY: "Quality",
    iec.IEC61850_CHECK: "Check",
    iec.IEC61850_ENTRY_TIME: "EntryTime",
    iec.IEC61850_CONSTRUCTED: "Struct",
}
FC_NAMES: Mapping[int, str] = {
    iec.IEC61850_FC_ST: "ST",
    iec.IEC61850_FC_MX: "MX",
    iec.IEC61850_FC_SP: "SP",
    iec.IEC61850_FC_SV: "SV",
    iec.IEC61850_FC_CF: "CF",
    iec.IEC61850_FC_DC: "DC",
    iec.IEC61850_FC_SG: "SG",
    iec.IEC61850_FC_SE: "SE",
    iec.IEC61850_FC_SR: "SR",
    iec.IEC61850_FC_OR: "OR",
    iec.IEC61850_FC_BL: "BL",
    iec.IEC61850_FC_EX: "EX",
    iec.IEC61850_FC_CO: "CO",
}
TRIGGER_ATTRIBUTES = (
    ("dchg", iec.TRG_OPT_DATA_CHANGED),
    ("qchg", iec.TRG_OPT_QUALITY_CHANGED),
    ("dupd", iec.TRG_OPT_DATA_UPDATE),
)


# -----------------------------------------------------------------------------------------------------
# the model, read back from libiec61850


@dataclass(frozen=True)
class AttributeNode:
    name: str
    type: int  # libiec61850 DataAttributeType
    fc: int
    triggers: int
    children: tuple[AttributeNode, ...]
    value: int | None  # enumerated values libiec61850 set itself (ctlModel)


@dataclass(frozen=True)
class ObjectNode:
    name: str
    attributes: tuple[AttributeNode, ...]


@dataclass(frozen=True)
class LogicalNodeNode:
    name: str
    objects: tuple[ObjectNode, ...]


@dataclass(frozen=True)
class DeviceNode:
    inst: str
    logical_nodes: tuple[LogicalNodeNode, ...]


def read_model(model: Any) -> tuple[DeviceNode, ...]:
    """The logical devices, nodes, objects and attributes of a libiec61850 model, in model order."""
    devices = []
    for index in range(iec.IedModel_getLogicalDeviceCount(model)):
        device = iec.IedModel_getDeviceByIndex(model, index)
        devices.append(DeviceNode(str(device.name), tuple(_read_logical_nodes(device.firstChild))))
    return tuple(devices)


def _siblings(node: Any) -> list[Any]:
    found = []
    while node is not None:
        found.append(node)
        node = node.sibling
    return found


def _read_logical_nodes(first: Any) -> list[LogicalNodeNode]:
    nodes = []
    for node in _siblings(first):
        objects = []
        for data_object in _siblings(node.firstChild):
            if data_object.modelType != iec.DataObjectModelType:
                raise ValueError(f"unexpected model node {data_object.name} in {node.name}")
            objects.append(ObjectNode(str(data_object.name), tuple(_read_attributes(data_object.firstChild))))
        nodes.append(LogicalNodeNode(str(node.name), tuple(objects)))
    return nodes


def _read_attributes(first: Any) -> list[AttributeNode]:
    attributes = []
    for node in _siblings(first):
        if node.modelType != iec.DataAttributeModelType:
            raise ValueError(
                f"sub data object {node.name}: the ICD writer supports none (no CDC here has one)"
            )
        attribute = iec.toDataAttribute(node)
        value = None
        if attribute.type == iec.IEC61850_ENUMERATED and attribute.mmsValue is not None:
            value = int(iec.MmsValue_toInt32(attribute.mmsValue))
        attributes.append(
            AttributeNode(
                name=str(attribute.name),
                type=int(attribute.type),
                fc=int(attribute.fc),
                triggers=int(attribute.triggerOptions),
                children=tuple(_read_attributes(attribute.firstChild)),
                value=value,
            )
        )
    return attributes


# -----------------------------------------------------------------------------------------------------
# the SCL document


def icd_text(built: BuiltModel, *, tls: bool) -> str:
    """The ICD (XML text) of a built model."""
    writer = _IcdWriter(built.plan, built.fixed, tls=tls)
    root = writer.document(read_model(built.model))
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def _tag(name: str) -> str:
    return f"{{{SCL_NS}}}{name}"


def _sub(parent: ET.Element, tag_name: str, /, **attributes: str) -> ET.Element:
    return ET.SubElement(parent, _tag(tag_name), attributes)


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:8]


class _IcdWriter:
    def __init__(self, plan: ModelPlan, fixed: Sequence[FixedValue], *, tls: bool) -> None:
        self.plan = plan
        self.fixed = fixed
        self.tls = tls
        self.enums_used: set[str] = set()
        self.lnode_types: dict[str, ET.Element] = {}
        self.do_types: dict[str, ET.Element] = {}
        self.da_types: dict[str, ET.Element] = {}

    def document(self, devices: Sequence[DeviceNode]) -> ET.Element:
        ET.register_namespace("", SCL_NS)
        plan = self.plan
        root = ET.Element(_tag("SCL"), {"version": "2007", "revision": "B", "release": "4"})
        _sub(
            root,
            "Header",
            id=f"{plan.ied_name}-icd",
            version=plan.iec_map.map_version,
            revision="",
            toolID=f"socgw {__version__}",
            nameStructure="IEDName",
        )
        ied = _sub(
            root,
            "IED",
            name=plan.ied_name,
            type="socgw",
            manufacturer="socgw",
            configVersion=plan.iec_map.map_version,
            originalSclVersion="2007",
            originalSclRevision="B",
        )
        self._services(ied)
        server = _sub(_sub(ied, "AccessPoint", name=ACCESS_POINT), "Server")
        if self.tls:
            _sub(server, "Authentication", certificate="true")
        else:
            _sub(server, "Authentication", none="true")
        for device in devices:
            self._device(server, plan.device(device.inst), device)
        templates = _sub(root, "DataTypeTemplates")
        for group in (self.lnode_types, self.do_types, self.da_types):
            for type_id in sorted(group):
                templates.append(group[type_id])
        for name in sorted(self.enums_used):
            enum_type = _sub(templates, "EnumType", id=name)
            for ordinal, literal in sorted(plan.iec_map.enums[name].items()):
                _sub(enum_type, "EnumVal", ord=str(ordinal)).text = literal
        return root

    def _services(self, ied: ET.Element) -> None:
        services = _sub(ied, "Services")
        for name in ("DynAssociation", "GetDirectory", "GetDataObjectDefinition", "DataObjectDirectory"):
            _sub(services, name)
        for name in ("GetDataSetValue", "DataSetDirectory", "ReadWrite", "GetCBValues"):
            _sub(services, name)
        reports = sum(len(device.spec.reports) for device in self.plan.devices)
        _sub(services, "ConfReportControl", max=str(reports))
        # libiec61850's defaults: a client may change every setting of a report block but its name.
        _sub(
            services,
            "ReportSettings",
            cbName="Fix",
            datSet="Dyn",
            rptID="Dyn",
            optFields="Dyn",
            bufTime="Dyn",
            trgOps="Dyn",
            intgPd="Dyn",
        )
        _sub(services, "ConfLNs", fixPrefix="true", fixLnInst="true")

    def _device(self, server: ET.Element, planned: PlannedDevice, device: DeviceNode) -> None:
        element = _sub(server, "LDevice", inst=device.inst)
        if planned.node_id is not None:
            element.set("desc", f"pack {planned.node_id}")
        else:
            element.set("desc", f"battery fleet of site {planned.texts['site']}")
        for logical_node in device.logical_nodes:
            ln_spec = planned.spec.logical_node(logical_node.name)
            assert ln_spec is not None  # the model was built from this plan
            lnode_type = self._lnode_type(ln_spec.ln_class, planned.spec, logical_node)
            if logical_node.name == "LLN0":
                ln = _sub(element, "LN0", lnClass="LLN0", inst="", lnType=lnode_type)
                self._datasets(ln, planned)
                self._reports(ln, planned)
            else:
                ln = _sub(
                    element, "LN", prefix="", lnClass=ln_spec.ln_class, inst=ln_spec.inst, lnType=lnode_type
                )
            self._instance_values(ln, device.inst, logical_node)

    def _datasets(self, ln0: ET.Element, planned: PlannedDevice) -> None:
        for dataset in planned.spec.datasets:
            element = _sub(ln0, "DataSet", name=dataset.name)
            for member in dataset.members:
                ln_spec = planned.spec.logical_node(member.logical_node)
                assert ln_spec is not None
                _sub(
                    element,
                    "FCDA",
                    ldInst=planned.inst,
                    prefix="",
                    lnClass=ln_spec.ln_class,
                    lnInst=ln_spec.inst,
                    doName=member.data_object,
                    fc=member.fc,
                )

    def _reports(self, ln0: ET.Element, planned: PlannedDevice) -> None:
        for report in planned.spec.reports:
            element = _sub(
                ln0,
                "ReportControl",
                name=report.name,
                rptID=rpt_id_of(planned, report),
                datSet=report.dataset,
                confRev=str(CONF_REV),
                buffered=_bool(report.buffered),
                bufTime=str(report.buf_time_ms),
                intgPd=str(report.integrity_period_ms),
            )
            _sub(element, "TrgOps", **{name: _bool(name in report.triggers) for name in TRIGGERS})
            _sub(element, "OptFields", **_option_flags(report))
            _sub(element, "RptEnabled", max="1")

    def _instance_values(self, ln: ET.Element, inst: str, logical_node: LogicalNodeNode) -> None:
        """DOI/DAI for the values set at start (name plates, units, ranges) and the control models."""
        values: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for item in self.fixed:
            if item.device == inst and item.logical_node == logical_node.name:
                values.setdefault(item.data_object, []).append(
                    (item.path, self._literal(item.path, item.value))
                )
        for data_object in logical_node.objects:
            for attribute in data_object.attributes:
                if attribute.name == "ctlModel" and attribute.value is not None:
                    literal = self._literal(("ctlModel",), attribute.value)
                    values.setdefault(data_object.name, []).append((("ctlModel",), literal))
        for data_object in logical_node.objects:
            for path, literal in values.get(data_object.name, []):
                doi = ln.find(f"{_tag('DOI')}[@name='{data_object.name}']")
                if doi is None:
                    doi = _sub(ln, "DOI", name=data_object.name)
                parent = doi
                for name in path[:-1]:
                    sdi = parent.find(f"{_tag('SDI')}[@name='{name}']")
                    parent = sdi if sdi is not None else _sub(parent, "SDI", name=name)
                _sub(_sub(parent, "DAI", name=path[-1]), "Val").text = literal

    def _literal(self, path: tuple[str, ...], value: str | float | int) -> str:
        enum = self.plan.iec_map.attribute_enums.get(path[-1])
        if enum is not None and isinstance(value, int):
            return self.plan.iec_map.enums[enum][value]
        if isinstance(value, float):
            return repr(value)
        return str(value)

    # -- types -------------------------------------------------------------------------------------

    def _lnode_type(self, ln_class: str, device: DeviceSpec, logical_node: LogicalNodeNode) -> str:
        ln_spec = device.logical_node(logical_node.name)
        assert ln_spec is not None
        members = []
        for data_object in logical_node.objects:
            spec = ln_spec.object(data_object.name)
            assert spec is not None  # every data object comes from the map
            members.append((data_object.name, self._do_type(spec, data_object)))
        type_id = f"{ln_class}_{_digest(ln_class, members)}"
        if type_id not in self.lnode_types:
            element = ET.Element(_tag("LNodeType"), {"id": type_id, "lnClass": ln_class})
            for name, do_type in members:
                _sub(element, "DO", name=name, type=do_type)
            self.lnode_types[type_id] = element
        return type_id

    def _do_type(self, spec: DataObjectSpec, data_object: ObjectNode) -> str:
        attributes = [self._attribute(attribute, spec, top=True) for attribute in data_object.attributes]
        type_id = f"{spec.cdc}_{_digest(spec.cdc, attributes)}"
        if type_id not in self.do_types:
            element = ET.Element(_tag("DOType"), {"id": type_id, "cdc": spec.cdc})
            for attributes_of_da in attributes:
                _sub(element, "DA", **dict(attributes_of_da))
            self.do_types[type_id] = element
        return type_id

    def _attribute(
        self, attribute: AttributeNode, spec: DataObjectSpec, *, top: bool
    ) -> tuple[tuple[str, str], ...]:
        """The SCL attributes of a DA (top) or BDA element, registering the types it refers to."""
        basic = BASIC_TYPES.get(attribute.type)
        if basic is None:
            raise ValueError(
                f"attribute {attribute.name} has a type the ICD writer does not know ({attribute.type})"
            )
        result: list[tuple[str, str]] = [("name", attribute.name), ("bType", basic)]
        if basic == "Struct":
            result.append(("type", self._da_type(attribute, spec)))
        elif basic == "Enum":
            result.append(("type", self._enum_of(attribute.name, spec)))
        if top:
            result.append(("fc", FC_NAMES[attribute.fc]))
            for name, bit in TRIGGER_ATTRIBUTES:
                if attribute.triggers & bit:
                    result.append((name, "true"))
        return tuple(result)

    def _da_type(self, attribute: AttributeNode, spec: DataObjectSpec) -> str:
        children = [self._attribute(child, spec, top=False) for child in attribute.children]
        type_id = f"{attribute.name}_{_digest(children)}"
        if type_id not in self.da_types:
            element = ET.Element(_tag("DAType"), {"id": type_id})
            for child in children:
                _sub(element, "BDA", **dict(child))
            self.da_types[type_id] = element
        return type_id

    def _enum_of(self, attribute: str, spec: DataObjectSpec) -> str:
        enum = spec.enum if attribute == "stVal" else self.plan.iec_map.attribute_enums.get(attribute)
        if enum is None:
            raise ValueError(
                f"enumerated attribute {attribute} of {spec.name} has no enumeration: add it to "
                f"`attribute_enums` in the map {self.plan.iec_map.path}"
            )
        self.enums_used.add(enum)
        return enum


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _option_flags(report: ReportSpec) -> dict[str, str]:
    return {name: _bool(name in report.options) for name in REPORT_OPTIONS}
