"""BIF ``property`` lines carried by the BayesNet (issue 20): read -> BayesNet -> write keeps them.

Oracle: pgmpy. Its ``BIFWriter`` writes a network whose variables carry several properties; our
reader turns the text into a :class:`pgm.bayesnet.BayesNet`, our writer writes that back, and
pgmpy's ``BIFReader`` must find the same CPDs (exactly: the decimal strings are written with
``repr`` precision and parsed with ``float`` on both sides) and the same property lines.
"""

from __future__ import annotations

import numpy as np
import pytest

from inference.errors import ModelError
from pgm import bif
from pgm.bayesnet import BayesNet
from test_peer_bif import TEXT  # a network with network, variable and table properties


def _pgmpy_network():
    models = pytest.importorskip("pgmpy.models")
    from pgmpy.factors.discrete import TabularCPD

    net = models.DiscreteBayesianNetwork([("cloudy", "rain"), ("cloudy", "sprinkler"), ("rain", "wet"),
                                          ("sprinkler", "wet")])
    names = {v: ["no", "yes"] for v in ("cloudy", "rain", "sprinkler", "wet")}
    net.add_cpds(
        TabularCPD("cloudy", 2, [[0.5], [0.5]], state_names=names),
        TabularCPD("rain", 2, [[0.8, 0.2], [0.2, 0.8]], ["cloudy"], [2], state_names=names),
        TabularCPD("sprinkler", 2, [[0.5, 0.9], [0.5, 0.1]], ["cloudy"], [2], state_names=names),
        TabularCPD("wet", 2, [[1.0, 0.1, 0.1, 0.01], [0.0, 0.9, 0.9, 0.99]], ["sprinkler", "rain"], [2, 2],
                   state_names=names),
    )
    net.nodes["cloudy"].update({"position": "(10, 20)", "label": "sky", "colour": "grey"})
    net.nodes["wet"].update({"position": "(30, 40)", "unit": "none"})
    return net


def test_pgmpy_properties_survive_our_bayesnet_round_trip(tmp_path):
    readwrite = pytest.importorskip("pgmpy.readwrite")
    net = _pgmpy_network()
    source = tmp_path / "theirs.bif"
    readwrite.BIFWriter(net).write(str(source))
    expected = readwrite.BIFReader(str(source), include_properties=True)

    bn = BayesNet.from_bif(source)
    assert bn.properties["variables"]["cloudy"] == ("colour = grey", "label = sky", "position = (10, 20)")
    assert bn.properties["variables"]["wet"] == ("position = (30, 40)", "unit = none")
    target = tmp_path / "ours.bif"
    bn.to_bif(target)

    reader = readwrite.BIFReader(str(target), include_properties=True)
    assert reader.variable_properties == expected.variable_properties
    assert {v: p for v, p in reader.variable_properties.items() if p} == {
        "cloudy": ["colour = grey", "label = sky", "position = (10, 20)"],
        "wet": ["position = (30, 40)", "unit = none"]}
    ours, theirs = reader.get_model(), expected.get_model()
    for var in net.nodes:
        a, b = ours.get_cpds(var), theirs.get_cpds(var)
        assert a.variables == b.variables
        np.testing.assert_array_equal(a.get_values(), b.get_values())
    assert dict(ours.nodes["cloudy"]) == dict(net.nodes["cloudy"])


def test_pgmpy_xmlbif_properties_survive_our_bayesnet_round_trip(tmp_path):
    """pgmpy's XMLBIF writer keeps one ``<PROPERTY>`` per variable (its last attribute), and an
    empty one for a variable without: the texts, not the empty element, come back."""
    readwrite = pytest.importorskip("pgmpy.readwrite")
    net = _pgmpy_network()
    net.nodes["cloudy"].clear()
    net.nodes["cloudy"]["position"] = "(10, 20)"
    source = tmp_path / "theirs.xml"
    readwrite.XMLBIFWriter(net).write(str(source))
    expected = readwrite.XMLBIFReader(str(source))

    bn = BayesNet.from_xmlbif(source)
    assert bn.properties["variables"] == {"cloudy": ("position = (10, 20)",), "wet": ("unit = none",)}
    target = tmp_path / "ours.xml"
    bn.to_xmlbif(target)
    reader = readwrite.XMLBIFReader(str(target))
    assert {v: p for v, p in reader.variable_property.items() if p} == \
        {v: p for v, p in expected.variable_property.items() if p != [None]}
    ours, theirs = reader.get_model(), expected.get_model()
    for var in net.nodes:
        np.testing.assert_array_equal(ours.get_cpds(var).get_values(), theirs.get_cpds(var).get_values())
    assert dict(ours.nodes["wet"]) == {"unit": "none"}


def test_network_and_table_properties_survive_and_follow_new_tables(tmp_path):
    path = tmp_path / "rain.bif"
    path.write_text(TEXT)
    bn = BayesNet.from_bif(path)
    assert bn.properties == {"network": ("author = someone",),
                             "variables": {"cloudy": ("position = (10, 20)", "label = sky")},
                             "tables": {"rain": ("source = guess",)}}
    refit = bn.with_cpts({"cloudy": [0.3, 0.7]})
    again = bif.parse_bif(bif.format_bif(refit.to_network_spec()))
    assert again.network_properties == ("author = someone",)
    assert again.properties == {"cloudy": ("position = (10, 20)", "label = sky")}
    assert again.table_properties == {"rain": ("source = guess",)}
    np.testing.assert_array_equal(again.cpts["cloudy"], [0.3, 0.7])
    from pgm import xmlbif  # the same texts through XMLBIF's <PROPERTY> elements
    as_xml = xmlbif.parse_xmlbif(xmlbif.format_xmlbif(refit.to_network_spec()))
    assert (as_xml.network_properties, as_xml.properties, as_xml.table_properties) == \
        (again.network_properties, again.properties, again.table_properties)
    plain = BayesNet({"a": ["0", "1"]}, {}, {"a": [0.5, 0.5]})
    assert plain.properties == {"network": (), "variables": {}, "tables": {}}


def test_bad_properties_get_typed_errors():
    args = ({"a": ["0", "1"]}, {}, {"a": [0.5, 0.5]})
    with pytest.raises(ModelError, match="'b', which is not a variable"):
        BayesNet(*args, properties={"variables": {"b": ["x = 1"]}})
    with pytest.raises(ModelError, match="keys among"):
        BayesNet(*args, properties={"nodes": {}})
    with pytest.raises(ModelError, match="sequence of strings"):
        BayesNet(*args, properties={"network": "author = me"})
