"""BIF / XMLBIF readers and writers, against pgmpy's and pyAgrum's readers on the same files."""

import gzip
import re
import time

import numpy as np
import pytest

from genzoo.data import bn_network_path, bn_networks
from inference.errors import ModelError, ParseError
from pgm import bif
from pgm.bayesnet import BayesNet


def _text(name: str) -> str:
    with gzip.open(bn_network_path(name), "rt") as handle:
        return handle.read()


def _pgmpy_table(model, var, parents):
    """pgmpy's CPT of ``var`` in our axis order ``(*parents, var)``.

    pgmpy's ``TabularCPD.get_values()`` is ``(card(var), prod(card(evidence)))``: the variable
    first, then the evidence in ``cpd.variables[1:]`` order, last evidence fastest.
    """
    cpd = model.get_cpds(var)
    evidence = list(cpd.variables[1:])
    assert sorted(evidence) == sorted(parents)
    cards = [cpd.cardinality[cpd.variables.index(p)] for p in evidence]
    values = cpd.get_values().reshape(cpd.variable_card, *cards)  # (var, *evidence)
    values = np.moveaxis(values, 0, -1)  # (*evidence, var)
    return values.transpose([evidence.index(p) for p in parents] + [len(parents)])


# --------------------------------------------------------------------------- bundled networks
def test_every_bundled_network_loads():
    names = bn_networks()
    assert {"asia", "alarm", "child", "insurance", "hepar2", "win95pts", "andes", "munin",
            "pathfinder", "pigs", "link"} <= set(names)
    for name in names:
        text = _text(name)
        spec = bif.parse_bif(text)
        bn = BayesNet(spec.states, spec.parents, spec.cpts, name=spec.name)
        # counts straight from the text: one 'variable' and one 'probability' block each
        assert len(bn.variables) == len(re.findall(r"^variable\s", text, re.M)), name
        assert len(re.findall(r"^probability\s", text, re.M)) == len(bn.variables), name
        given = re.findall(r"^probability \( \S+ \| ([^)]*)\)", text, re.M)
        edges = sum(len(parents.split(",")) for parents in given)
        assert bn.graph.number_of_edges() == edges, name
        for var in bn.variables:
            table = bn.cpt(var)
            assert table.shape == (*[len(bn.states[p]) for p in bn.parents(var)], len(bn.states[var]))
            np.testing.assert_allclose(table.sum(-1), 1.0, rtol=0, atol=1e-13)
        position = {v: i for i, v in enumerate(bn.variables)}
        assert all(position[p] < position[v] for v in bn.variables for p in bn.parents(v))


@pytest.mark.parametrize("name", ["asia", "alarm"])
def test_reader_agrees_with_pgmpy(name):
    from pgmpy.readwrite import BIFReader

    model = BIFReader(string=_text(name)).get_model()
    bn = BayesNet.from_bif(bn_network_path(name))
    assert set(bn.variables) == set(model.nodes())
    assert bn.graph.number_of_edges() == len(model.edges())
    for var in bn.variables:
        cpd = model.get_cpds(var)
        assert bn.states[var] == tuple(cpd.state_names[var])
        assert set(bn.parents(var)) == set(model.get_parents(var))
        raw = _pgmpy_table(model, var, bn.parents(var))
        # rows that sum to one in float64 are kept bit for bit; the others are divided by their sum
        exact = raw.sum(-1) == 1.0
        np.testing.assert_array_equal(bn.cpt(var)[exact], raw[exact])
        np.testing.assert_allclose(bn.cpt(var), raw / raw.sum(-1, keepdims=True), rtol=1e-14, atol=0)


def test_axis_order_follows_the_file_and_pgmpys_tabular_cpd():
    from pgmpy.readwrite import BIFReader

    bn = BayesNet.from_bif(bn_network_path("asia"))
    # asia.bif: probability ( either | lung, tub ) { (yes, yes) 1.0, 0.0; (no, yes) 1.0, 0.0;
    #                                                 (yes, no) 1.0, 0.0; (no, no) 0.0, 1.0; }
    assert bn.parents("either") == ("lung", "tub")
    table = bn.cpt("either")
    np.testing.assert_array_equal(table[1, 1], [0.0, 1.0])  # lung=no, tub=no
    np.testing.assert_array_equal(table[0, 1], [1.0, 0.0])  # lung=yes, tub=no
    # (yes, no) 0.8, 0.2 in dysp | bronc, either
    np.testing.assert_array_equal(bn.cpt("dysp")[0, 1], [0.8, 0.2])
    cpd = BIFReader(string=_text("asia")).get_model().get_cpds("dysp")
    assert list(cpd.variables) == ["dysp", "bronc", "either"]
    # pgmpy: values[dysp, bronc * 2 + either]; ours: [bronc, either, dysp]
    np.testing.assert_array_equal(cpd.get_values()[:, 0 * 2 + 1], bn.cpt("dysp")[0, 1])


def test_munin_loads_whole_and_in_time_linear_in_its_size():
    # structure against the bnlearn repository's published figures for munin: 1041 nodes,
    # 1397 arcs, 80592 free parameters; every CPT row sums to one up to float rounding
    bn = BayesNet.from_bif(bn_network_path("munin"))
    assert len(bn.variables) == bn.graph.number_of_nodes() == 1041
    assert bn.graph.number_of_edges() == 1397
    tables = [bn.cpt(v) for v in bn.variables]
    assert sum(t.size // t.shape[-1] * (t.shape[-1] - 1) for t in tables) == 80592
    # a row holds at most a few dozen decimals, each rounded to 2**-53 relative: 1e-12 is ample
    assert max(np.abs(t.sum(-1) - 1).max() for t in tables) < 1e-12

    # Speed as a ratio measured in this process, not a wall-clock bound that a loaded machine
    # breaks: seconds per token (words and numbers of the file) for munin (153 467 tokens)
    # against alarm (1 847). A linear reader spends at most alarm's per-token time on munin
    # (fixed costs amortise; measured ratio 0.37 at load 7 on 2 cores). A reader quadratic in
    # the tokens or in the variables would give 153467 / 1847 = 83 or 1041 / 37 = 28. The bound
    # 3 lies between, leaving a factor of 8 for load noise; the minimum over alternating runs
    # (the timeit convention) discards the runs that another process interrupted.
    tokens = {name: len(re.findall(r"[^\s,;{}()|]+", _text(name))) for name in ("munin", "alarm")}

    def seconds_per_token(name):
        start = time.perf_counter()
        BayesNet.from_bif(bn_network_path(name))
        return (time.perf_counter() - start) / tokens[name]

    munin, alarm = [], []
    for _ in range(2):
        munin.append(seconds_per_token("munin"))
        alarm += [seconds_per_token("alarm") for _ in range(3)]
    assert min(munin) < 3 * min(alarm), (min(munin), min(alarm))


def test_table_form_has_the_variable_slowest_and_default_rows_fill_in():
    text = """
    network t { property author = "x; y"; }
    variable A { type discrete [ 2 ] { a0, a1 }; }
    variable B { type discrete [ 3 ] { b0, b1, b2 }; property position = (1, 2); }
    variable C { type discrete [ 2 ] { c0, c1 }; }
    /* a block comment with { braces } */
    probability ( A ) { table 0.3 0.7; }            // blanks separate values too
    probability ( B ) { table 0.2, 0.3, 0.5; }
    probability ( C | A, B ) {
      table 0.1, 0.2, 0.3, 0.4, 0.5, 0.6,
            0.9, 0.8, 0.7, 0.6, 0.5, 0.4;
    }
    """
    spec = bif.parse_bif(text)
    assert spec.name == "t"
    # pgmpy and pyAgrum read this table as C=c0 for (a0,b0), (a0,b1), ..., (a1,b2), then C=c1
    expected = np.array([[[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]], [[0.4, 0.6], [0.5, 0.5], [0.6, 0.4]]])
    np.testing.assert_array_equal(spec.cpts["C"], expected)
    from pgmpy.readwrite import BIFReader

    # pgmpy's reader needs one block per line group ("}\n"): the same network, laid out plainly
    plain = "\n".join(f"{line.strip()}" for line in """
    variable A {
    type discrete [ 2 ] { a0, a1 };
    }
    variable B {
    type discrete [ 3 ] { b0, b1, b2 };
    }
    variable C {
    type discrete [ 2 ] { c0, c1 };
    }
    probability ( A ) {
    table 0.3, 0.7;
    }
    probability ( B ) {
    table 0.2, 0.3, 0.5;
    }
    probability ( C | A, B ) {
    table 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4;
    }
    """.splitlines())
    np.testing.assert_array_equal(bif.parse_bif(plain).cpts["C"], expected)
    peer = BIFReader(string=plain).get_model()
    np.testing.assert_array_equal(_pgmpy_table(peer, "C", ("A", "B")), expected)

    rows = """
    variable A { type discrete [ 2 ] { a0, a1 }; }
    variable C { type discrete [ 2 ] { c0, c1 }; }
    probability ( A ) { table 0.5, 0.5; }
    probability ( C | A ) { (a1) 0.25, 0.75; default 0.5, 0.5; }
    """
    np.testing.assert_array_equal(bif.parse_bif(rows).cpts["C"], [[0.5, 0.5], [0.25, 0.75]])


def test_quoted_names_and_names_with_symbols_round_trip(tmp_path):
    bn = BayesNet(
        states={"age group": ["<5", "5-12", "12+"], "x/y": ["a b", "c,d"]},
        parents={"x/y": ["age group"]},
        cpts={"age group": [0.2, 0.3, 0.5], "x/y": [[0.1, 0.9], [0.3, 0.7], [1.0, 0.0]]},
        name="odd names",
    )
    for write, read in ((bn.to_bif, BayesNet.from_bif), (bn.to_xmlbif, BayesNet.from_xmlbif)):
        path = tmp_path / "odd"
        write(path)
        back = read(path)
        assert back.name == "odd names"
        assert back.states == bn.states
        assert back.parents("x/y") == ("age group",)
        np.testing.assert_array_equal(back.cpt("x/y"), bn.cpt("x/y"))


# --------------------------------------------------------------------------- round trips
def _same_network(a: BayesNet, b: BayesNet):
    assert a.name == b.name
    assert a.variables == b.variables
    assert a.states == b.states
    for var in a.variables:
        assert a.parents(var) == b.parents(var)
        assert a.cpt(var).dtype == b.cpt(var).dtype == np.float64
        np.testing.assert_array_equal(a.cpt(var), b.cpt(var))  # bit for bit


@pytest.mark.parametrize("name", ["asia", "alarm", "child", "hepar2"])
@pytest.mark.parametrize("fmt", ["bif", "xmlbif"])
def test_our_writer_then_our_reader_is_exact(tmp_path, name, fmt):
    bn = BayesNet.from_bif(bn_network_path(name))
    # make every value a full 17-digit float, so that any lossy printing would show
    noisy = bn.with_cpts({v: _perturbed(bn.cpt(v), i) for i, v in enumerate(bn.variables)})
    for net in (bn, noisy):
        for suffix in ("", ".gz"):
            path = tmp_path / f"{name}.{fmt}{suffix}"
            getattr(net, f"to_{fmt}")(path)
            if suffix:
                assert path.read_bytes()[:2] == b"\x1f\x8b"
            _same_network(net, getattr(BayesNet, f"from_{fmt}")(path))


def _perturbed(table, seed):
    rng = np.random.default_rng(seed)
    out = table * rng.uniform(0.5, 1.5, size=table.shape)
    return out / out.sum(-1, keepdims=True)


@pytest.mark.parametrize("name", ["asia", "alarm"])
def test_pgmpy_reads_our_files_back(tmp_path, name):
    from pgmpy.readwrite import BIFReader, XMLBIFReader

    bn = BayesNet.from_bif(bn_network_path(name))
    bn = bn.with_cpts({v: _perturbed(bn.cpt(v), i) for i, v in enumerate(bn.variables)})
    bn.to_bif(tmp_path / "net.bif")
    bn.to_xmlbif(tmp_path / "net.xml")
    for model in (BIFReader(str(tmp_path / "net.bif")).get_model(),
                  XMLBIFReader(str(tmp_path / "net.xml")).get_model()):
        assert set(model.nodes()) == set(bn.variables)
        for var in bn.variables:
            assert tuple(model.get_cpds(var).state_names[var]) == bn.states[var]
            peer = _pgmpy_table(model, var, bn.parents(var))
            np.testing.assert_allclose(peer, bn.cpt(var), rtol=1e-12, atol=0)


def _pyagrum_table(gbn, var, parents):
    """pyAgrum's CPT of ``var`` in our axis order; ``toarray()`` axes are ``reversed(names)``."""
    tensor = gbn.cpt(var)
    axes = list(reversed(tensor.names))
    assert sorted(axes) == sorted((*parents, var))
    return tensor.toarray().transpose([axes.index(u) for u in (*parents, var)])


@pytest.mark.parametrize("name", ["asia", "alarm"])
def test_pyagrum_reads_our_files_back(tmp_path, name):
    gum = pytest.importorskip("pyagrum")
    bn = BayesNet.from_bif(bn_network_path(name))
    bn = bn.with_cpts({v: _perturbed(bn.cpt(v), i) for i, v in enumerate(bn.variables)})
    bn.to_bif(tmp_path / "net.bif")
    bn.to_xmlbif(tmp_path / "net.bifxml")  # pyAgrum picks its reader by this extension
    from_bif = gum.loadBN(str(tmp_path / "net.bif"))
    from_xml = gum.loadBN(str(tmp_path / "net.bifxml"))
    for var in bn.variables:
        assert tuple(from_xml.variable(var).labels()) == bn.states[var]
        assert tuple(from_bif.variable(var).labels()) == bn.states[var]
        ours = bn.cpt(var)
        # XMLBIF: pyAgrum parses float64, so the values are the same to the last bit
        np.testing.assert_allclose(_pyagrum_table(from_xml, var, bn.parents(var)), ours, rtol=1e-12, atol=0)
        # BIF: pyAgrum's BIF parser reads numbers as float32 (0.3 -> 0.30000001192092896), so the
        # exact expectation is our value rounded to float32
        np.testing.assert_array_equal(_pyagrum_table(from_bif, var, bn.parents(var)),
                                      ours.astype(np.float32).astype(np.float64))


# --------------------------------------------------------------------------- malformed files
_GOOD = """network demo {
}
variable A {
  type discrete [ 2 ] { a0, a1 };
}
variable B {
  type discrete [ 2 ] { b0, b1 };
}
probability ( A ) {
  table 0.5, 0.5;
}
probability ( B | A ) {
  (a0) 0.1, 0.9;
  (a1) 0.2, 0.8;
}
"""


def _broken(old: str, new: str) -> str:
    assert old in _GOOD
    return _GOOD.replace(old, new, 1)


@pytest.mark.parametrize(
    "text, line, words",
    [
        (_broken("probability ( B | A )", "probability ( B | Z )"), 12, ["unknown variable", "'Z'"]),
        (_broken("(a1) 0.2, 0.8;", "(a1) 0.2, 0.7, 0.1;"), 14, ["3 values", "'B'"]),
        (_broken("(a1) 0.2, 0.8;", "(a7) 0.2, 0.8;"), 14, ["unknown state 'a7'", "parent 'A'"]),
        (_broken("(a1) 0.2, 0.8;", "(a1) 0.2, 0.8x;"), 14, ["'0.8x'", "not a finite number"]),
        (_broken("table 0.5, 0.5;", "table 0.5, abc;"), 10, ["'abc'", "not a finite number"]),
        (_broken("(a1) 0.2, 0.8;", "(a1) 0.2, nan;"), 14, ["'nan'", "not a finite number"]),
        (_broken("table 0.5, 0.5;", "table 0.5, 0.5, 0.1;"), 10, ["3 values", "expected 2"]),
        (_broken("  (a1) 0.2, 0.8;\n}", "  (a1) 0.2, 0.8;\n"), 12, ["'{' is never closed"]),
        (_broken("  table 0.5, 0.5;\n}", "  table 0.5, 0.5;\n}\n}"), 12, ["'}' without a matching '{'"]),
        (_broken("(a1) 0.2, 0.8;", "(a0) 0.2, 0.8;"), 14, ["given twice"]),
        (_broken("  (a1) 0.2, 0.8;\n", ""), 12, ["no row for parent configuration (a1)"]),
        (_broken("[ 2 ] { b0, b1 }", "[ 3 ] { b0, b1 }"), 7, ["declares 3 states", "'B'"]),
        (_broken("{ b0, b1 }", "{ b0, b0 }"), 7, ["state 'b0' twice"]),
        (_broken("variable B", "variable A"), 6, ["declared twice"]),
        (_broken("probability ( A ) {\n  table 0.5, 0.5;\n}\n", ""), 3, ["'A' has no probability block"]),
        (_broken("(a1) 0.2, 0.8;", "(a1) 0.2, 0.8"), 14, ["expected '(states) values;'"]),
        (_broken("network demo", "netwrk demo"), 1, ["expected a 'network', 'variable' or 'probability'"]),
        (_broken("variable B {", "/* unfinished\nvariable B {"), 6, ["'/*' is never closed"]),
    ],
)
def test_malformed_bif_names_path_and_line(tmp_path, text, line, words):
    path = tmp_path / "bad.bif"
    path.write_text(text)
    with pytest.raises(ParseError) as info:
        BayesNet.from_bif(path)
    message = str(info.value)
    assert info.value.path == str(path) and info.value.line == line, message
    assert message.startswith(f"{path}, line {line}: ")
    for word in words:
        assert word in message


def test_invalid_network_in_a_wellformed_file_names_the_table_line(tmp_path):
    path = tmp_path / "bad.bif"
    path.write_text(_broken("(a1) 0.2, 0.8;", "(a1) 0.2, 0.7;"))
    with pytest.raises(ModelError, match=r"bad\.bif, line 12: .*'B'.*\(A=a1\).*sums to 0\.89999"):
        BayesNet.from_bif(path)
    path.write_text(_broken("probability ( A ) {", "probability ( A | B ) {").replace(
        "table 0.5, 0.5;", "(b0) 0.5, 0.5;\n  (b1) 0.5, 0.5;"))
    with pytest.raises(ModelError, match=r"cycle: '(A' -> 'B' -> 'A|B' -> 'A' -> 'B)'"):
        BayesNet.from_bif(path)


_GOOD_XML = """<?xml version="1.0"?>
<BIF VERSION="0.3">
<NETWORK>
<NAME>demo</NAME>
<VARIABLE TYPE="nature">
  <NAME>A</NAME>
  <OUTCOME>a0</OUTCOME>
  <OUTCOME>a1</OUTCOME>
  <PROPERTY>position = (1, 2)</PROPERTY>
</VARIABLE>
<VARIABLE TYPE="nature">
  <NAME>B</NAME>
  <OUTCOME>b0</OUTCOME>
  <OUTCOME>b1</OUTCOME>
</VARIABLE>
<DEFINITION>
  <FOR>A</FOR>
  <TABLE>0.5 0.5</TABLE>
</DEFINITION>
<DEFINITION>
  <FOR>B</FOR>
  <GIVEN>A</GIVEN>
  <TABLE>0.1 0.9
         0.2 0.8</TABLE>
</DEFINITION>
</NETWORK>
</BIF>
"""


def test_xmlbif_reader_reads_given_rows_with_the_variable_fastest(tmp_path):
    path = tmp_path / "good.xml"
    path.write_text(_GOOD_XML)
    bn = BayesNet.from_xmlbif(path)
    assert bn.name == "demo" and bn.parents("B") == ("A",)
    np.testing.assert_array_equal(bn.cpt("B"), [[0.1, 0.9], [0.2, 0.8]])
    from pgmpy.readwrite import XMLBIFReader

    peer = XMLBIFReader(str(path)).get_model()
    np.testing.assert_array_equal(_pgmpy_table(peer, "B", ("A",)), bn.cpt("B"))


@pytest.mark.parametrize(
    "old, new, line, words",
    [
        ("<GIVEN>A</GIVEN>", "<GIVEN>Z</GIVEN>", 20, ["unknown variable 'Z'"]),
        ("0.2 0.8</TABLE>", "0.2 0.8 0.1</TABLE>", 23, ["5 values", "expected 4"]),
        ("0.2 0.8</TABLE>", "0.2 zero</TABLE>", 24, ["'zero'", "not a finite number"]),
        # B's VARIABLE left open: expat stops at the first closing tag that does not match
        ("</VARIABLE>\n<DEFINITION>", "<DEFINITION>", 25, ["malformed XML", "mismatched tag"]),
        ("<OUTCOME>b1</OUTCOME>", "<OUTCOME>b0</OUTCOME>", 11, ["state 'b0' twice"]),
        ("<FOR>A</FOR>\n  <TABLE>0.5 0.5</TABLE>\n</DEFINITION>\n", "<FOR>A</FOR>\n</DEFINITION>\n",
         16, ["no <TABLE>"]),
    ],
)
def test_malformed_xmlbif_names_path_and_line(tmp_path, old, new, line, words):
    assert old in _GOOD_XML
    path = tmp_path / "bad.xml"
    path.write_text(_GOOD_XML.replace(old, new, 1))
    with pytest.raises(ParseError) as info:
        BayesNet.from_xmlbif(path)
    message = str(info.value)
    assert info.value.line == line, message
    for word in words:
        assert word in message


def test_missing_file_is_a_parse_error_naming_the_path(tmp_path):
    with pytest.raises(ParseError, match="nowhere.bif"):
        BayesNet.from_bif(tmp_path / "nowhere.bif")
