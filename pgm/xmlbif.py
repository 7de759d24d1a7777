"""Reader and writer of XMLBIF 0.3, the XML format of discrete Bayesian networks (Cozman 1998).

``<VARIABLE>`` elements with ``<NAME>`` and ``<OUTCOME>``; ``<DEFINITION>`` elements with ``<FOR>``,
``<GIVEN>`` (parents, in order) and a ``<TABLE>`` in row-major order over (GIVEN..., FOR): the
variable's own state varies fastest. Files are read into the same :class:`pgm.bif.NetworkSpec` as
BIF files (the zoo's axis convention, the variable's own states last). A malformed file raises
:class:`~inference.errors.ParseError` with the path and the 1-based line of the fault (expat
records each element's line). Writers print every probability with ``repr``, so a written network
reads back bit for bit. ``<PROPERTY>`` texts of the network, its variables and its definitions are
kept (``NetworkSpec.network_properties``, ``properties``, ``table_properties``) and written back.

References:
    Cozman (1998). The Interchange Format for Bayesian Networks (BIF 0.15 and XMLBIF 0.3).

Example:
    >>> from genzoo.data import bn_network_path
    >>> from pgm.bif import read_bif
    >>> spec = read_bif(bn_network_path("asia"))
    >>> parse_xmlbif(format_xmlbif(spec)).cpts["dysp"].tolist() == spec.cpts["dysp"].tolist()
    True
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from xml.parsers import expat
from xml.sax.saxutils import escape

import numpy as np

from inference.errors import ParseError
from pgm.bif import NetworkSpec, _numbers, _read_text, _write_text

__all__ = ["read_xmlbif", "parse_xmlbif", "format_xmlbif", "write_xmlbif"]


def read_xmlbif(path) -> NetworkSpec:
    """Read an XMLBIF 0.3 file (plain or gzipped) into a :class:`NetworkSpec`.

    Raises:
        ParseError: with the path and 1-based line: malformed XML, an unknown variable in
            ``<FOR>`` / ``<GIVEN>``, a wrong number of values, a non-number, a missing table.
    """
    path = os.fspath(path)
    default_name = os.path.basename(path).split(".")[0] or "bayesnet"
    return parse_xmlbif(_read_text(path), path=path, default_name=default_name)


def _parse_xml(text: str, path: str):
    """Parse XML with expat into an ``xml.etree`` tree, recording each element's start line."""
    builder = ET.TreeBuilder()
    lines: dict[int, int] = {}
    parser = expat.ParserCreate()

    def start(tag, attrs):
        element = builder.start(tag, attrs)
        lines[id(element)] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(text, True)
    except expat.ExpatError as err:
        raise ParseError(f"malformed XML: {expat.ErrorString(err.code)}", path, err.lineno) from None
    root = builder.close()
    return root, lambda element: lines.get(id(element))


def parse_xmlbif(text: str, *, path: str = "<string>", default_name: str = "bayesnet") -> NetworkSpec:
    """Parse the text of an XMLBIF 0.3 file (see :func:`read_xmlbif`)."""
    root, line_of = _parse_xml(text, path)
    network = root if root.tag == "NETWORK" else root.find("NETWORK")
    if network is None:
        raise ParseError("no <NETWORK> element", path, line_of(root))
    name_element = network.find("NAME")
    name = (name_element.text or "").strip() if name_element is not None else ""

    states: dict[str, tuple[str, ...]] = {}
    declared_at: dict[str, int] = {}
    properties: dict[str, tuple[str, ...]] = {}
    table_properties: dict[str, tuple[str, ...]] = {}
    for element in network.findall("VARIABLE"):
        line = line_of(element)
        kind = element.get("TYPE", "nature")
        var = _xml_text(element, "NAME", path, line)
        if kind != "nature":
            raise ParseError(f"variable {var!r} has TYPE {kind!r}; only 'nature' (chance) "
                             f"variables are supported", path, line)
        if var in states:
            raise ParseError(f"variable {var!r} is declared twice (first at line "
                             f"{declared_at[var]})", path, line)
        outcomes = tuple((o.text or "").strip() for o in element.findall("OUTCOME"))
        if not outcomes:
            raise ParseError(f"variable {var!r} has no <OUTCOME>", path, line)
        if len(set(outcomes)) != len(outcomes):
            dup = next(s for s in outcomes if outcomes.count(s) > 1)
            raise ParseError(f"variable {var!r} lists state {dup!r} twice", path, line)
        states[var] = outcomes
        declared_at[var] = line
        if _properties(element):
            properties[var] = _properties(element)

    parents: dict[str, tuple[str, ...]] = {}
    cpts: dict[str, np.ndarray] = {}
    lines: dict[str, int] = {}
    # XMLBIF 0.3 says DEFINITION; its 0.2 draft said PROBABILITY
    for element in network.findall("DEFINITION") + network.findall("PROBABILITY"):
        line = line_of(element)
        var = _xml_text(element, "FOR", path, line)
        pars = tuple((g.text or "").strip() for g in element.findall("GIVEN"))
        for name_ in (var, *pars):
            if name_ not in states:
                raise ParseError(f"<DEFINITION> names unknown variable {name_!r}", path, line)
        if var in cpts:
            raise ParseError(f"a second <DEFINITION> for {var!r} (the first is at line "
                             f"{lines[var]})", path, line)
        if len(set(pars)) != len(pars) or var in pars:
            raise ParseError(f"<DEFINITION> of {var!r} names a variable twice", path, line)
        table = element.find("TABLE")
        if table is None:
            raise ParseError(f"<DEFINITION> of {var!r} has no <TABLE>", path, line)
        shape = (*[len(states[p]) for p in pars], len(states[var]))
        numbers = table.text or ""
        table_line = line_of(table)

        def line_at(offset: int, numbers=numbers, table_line=table_line) -> int:
            return table_line + numbers.count("\n", 0, offset)

        values = _numbers([(numbers, 0)], int(np.prod(shape)), var, path, line_at)
        cpts[var] = values.reshape(shape)
        parents[var] = pars
        if _properties(element):
            table_properties[var] = _properties(element)
        lines[var] = table_line
    for var in states:
        if var not in cpts:
            raise ParseError(f"variable {var!r} has no <DEFINITION>", path, declared_at[var])
    return NetworkSpec(name=name or default_name, states=states,
                       parents={v: parents[v] for v in states},
                       cpts={v: cpts[v] for v in states}, lines={v: lines[v] for v in states},
                       network_properties=_properties(network), properties=properties,
                       table_properties=table_properties)


def _properties(element) -> tuple[str, ...]:
    """The stripped texts of the ``<PROPERTY>`` children of ``element`` (empty ones left out)."""
    return tuple(text for p in element.findall("PROPERTY") if (text := (p.text or "").strip()))


def _xml_text(element, tag: str, path: str, line) -> str:
    child = element.find(tag)
    if child is None or not (child.text or "").strip():
        raise ParseError(f"<{element.tag}> without <{tag}>", path, line)
    return child.text.strip()


def format_xmlbif(spec: NetworkSpec) -> str:
    """The XMLBIF 0.3 text of ``spec``; each ``<TABLE>`` row-major over (GIVEN..., FOR)."""
    def props(texts):
        return "".join(f"\t<PROPERTY>{escape(t)}</PROPERTY>\n" for t in texts)

    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<BIF VERSION="0.3">\n<NETWORK>\n',
           f"<NAME>{escape(spec.name)}</NAME>\n{props(spec.network_properties)}"]
    for var, names in spec.states.items():
        outcomes = "".join(f"\t<OUTCOME>{escape(s)}</OUTCOME>\n" for s in names)
        out.append(f'<VARIABLE TYPE="nature">\n\t<NAME>{escape(var)}</NAME>\n{outcomes}'
                   f'{props(spec.properties.get(var, ()))}</VARIABLE>\n')
    for var in spec.states:
        given = "".join(f"\t<GIVEN>{escape(p)}</GIVEN>\n" for p in spec.parents.get(var, ()))
        table = np.asarray(spec.cpts[var], dtype=np.float64)
        rows = table.reshape(-1, table.shape[-1])
        body = "\n".join(" ".join(map(repr, row.tolist())) for row in rows)
        out.append(f"<DEFINITION>\n\t<FOR>{escape(var)}</FOR>\n{given}\t<TABLE>\n{body}\n\t</TABLE>\n"
                   f"{props(spec.table_properties.get(var, ()))}</DEFINITION>\n")
    out.append("</NETWORK>\n</BIF>\n")
    return "".join(out)


def write_xmlbif(path, spec: NetworkSpec) -> None:
    """Write ``spec`` as XMLBIF 0.3 to ``path`` (gzipped when ``path`` ends in ``.gz``)."""
    _write_text(path, format_xmlbif(spec))
