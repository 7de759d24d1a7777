"""BIF ``property`` lines and whole-table ``default`` entries (issue 20), against pgmpy's reader.

Oracles: pgmpy's ``BIFReader`` on the same text (its properties and its CPDs), the same table
written with ``table``, and the round trip format -> parse. Values are read as float64 from the
same decimal strings, so tables must agree exactly (pgmpy's reader also parses with ``float``).
"""

from __future__ import annotations

import numpy as np
import pytest

from inference.errors import ModelError, ParseError
from pgm import bif

TEXT = """network rain {
  property author = someone;
}
variable cloudy {
  type discrete [ 2 ] { no, yes };
  property position = (10, 20);
  property label = sky;
}
variable rain {
  type discrete [ 2 ] { no, yes };
}
probability ( cloudy ) {
  table 0.5, 0.5;
}
probability ( rain | cloudy ) {
  property source = guess;
  default 0.8, 0.1, 0.2, 0.9;
}
"""


def test_properties_are_read_and_written_back():
    spec = bif.parse_bif(TEXT)
    assert spec.network_properties == ("author = someone",)
    assert spec.properties == {"cloudy": ("position = (10, 20)", "label = sky")}
    assert spec.table_properties == {"rain": ("source = guess",)}
    again = bif.parse_bif(bif.format_bif(spec))
    assert again.network_properties == spec.network_properties
    assert again.properties == spec.properties
    assert again.table_properties == spec.table_properties
    for v in spec.cpts:
        np.testing.assert_array_equal(again.cpts[v], spec.cpts[v])


def test_a_default_spanning_every_configuration_is_a_table():
    spec = bif.parse_bif(TEXT)
    as_table = bif.parse_bif(TEXT.replace("default 0.8", "table 0.8"))
    np.testing.assert_array_equal(spec.cpts["rain"], as_table.cpts["rain"])
    np.testing.assert_array_equal(spec.cpts["rain"], [[0.8, 0.2], [0.1, 0.9]])  # own state slowest
    # a default of one row still fills the configurations without a row of their own
    rows = bif.parse_bif(TEXT.replace("default 0.8, 0.1, 0.2, 0.9;", "(yes) 0.3, 0.7; default 0.6, 0.4;"))
    np.testing.assert_array_equal(rows.cpts["rain"], [[0.6, 0.4], [0.3, 0.7]])
    with pytest.raises(ParseError, match="rain"):  # neither one row nor the whole table
        bif.parse_bif(TEXT.replace("default 0.8, 0.1, 0.2, 0.9;", "default 0.8, 0.1, 0.2;"))


def test_properties_and_default_tables_equal_pgmpy():
    readwrite = pytest.importorskip("pgmpy.readwrite")
    reader = readwrite.BIFReader(string=TEXT, include_properties=True)
    ours = bif.parse_bif(TEXT)
    theirs = reader.variable_properties
    assert list(ours.properties["cloudy"]) == theirs["cloudy"]
    assert theirs["rain"] == [] and "rain" not in ours.properties
    values = reader.variable_cpds["rain"]  # (own states, parent configurations)
    np.testing.assert_array_equal(ours.cpts["rain"], np.asarray(values).T)


def test_a_property_that_cannot_be_written_raises():
    spec = bif.parse_bif(TEXT)
    bad = bif.NetworkSpec(spec.name, spec.states, spec.parents, spec.cpts, properties={"cloudy": ("a; b",)})
    with pytest.raises(ModelError, match="a; b"):
        bif.format_bif(bad)
