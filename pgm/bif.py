"""Readers and writers for the two text formats of discrete Bayesian networks: BIF and XMLBIF.

This module holds :class:`NetworkSpec` and BIF; XMLBIF lives in :mod:`pgm.xmlbif`, whose functions
are re-exported here (``from pgm.bif import read_xmlbif`` keeps working).

A network file holds, for every variable :math:`v`, its states and its conditional probability
table (CPT) :math:`p(x_v \\mid x_{\\mathrm{pa}(v)})`. Both formats are read into one plain record,
:class:`NetworkSpec`, whose tables follow the zoo's axis convention: ``cpts[v]`` has shape
``(*[len(states[p]) for p in parents[v]], len(states[v]))``, the variable's own states last, its
parents' axes first in the order of ``parents[v]``. :class:`pgm.bayesnet.BayesNet` builds on it.

**BIF** (the Bayesian Interchange Format 0.15 of Cozman; the bnlearn repository's format)::

    network asia {
    }
    variable tub {                               // comments: // and /* */
      type discrete [ 2 ] { yes, no };
      property position = (10, 20);             // properties are kept (NetworkSpec.properties)
    }
    probability ( tub | asia ) {
      (yes) 0.05, 0.95;                          // one row per parent configuration
      (no) 0.01, 0.99;
    }
    probability ( asia ) {
      table 0.01, 0.99;                          // or one table (see below)
    }

A ``table`` lists the values with the variable's own state varying slowest, then the parents in
header order, the last parent fastest (the order pgmpy and pyAgrum read); a ``default`` row fills
every parent configuration without a row of its own. A ``default`` entry with as many values as
the whole table (and no rows) is read as a ``table``, as pgmpy reads it: with more than one
parent configuration the count tells the two apart. ``property`` statements of the network,
variable and probability blocks are kept as their text (``NetworkSpec.network_properties``,
``properties``, ``table_properties``) and written back.

**XMLBIF 0.3** (Cozman's XML version): ``<VARIABLE>`` elements with ``<NAME>`` and ``<OUTCOME>``,
``<DEFINITION>`` elements with ``<FOR>``, ``<GIVEN>`` (parents, in order) and a ``<TABLE>`` in
row-major order over (GIVEN..., FOR): the variable's own state varies fastest.

Parsing is done per block with regular expressions and one NumPy conversion per table, never a
loop over characters: munin (1041 variables, 1.2 MB) reads in a fraction of a second. A malformed
file raises :class:`~inference.errors.ParseError` with the path and the 1-based line of the fault.
Writers print every probability with ``repr`` (the shortest string that reads back to the same
float64), so a written network reads back bit for bit.

References:
    Cozman (1998). The Interchange Format for Bayesian Networks (BIF 0.15 and XMLBIF 0.3).
    Scutari (2010). Learning Bayesian networks with the bnlearn R package (the network repository).

Example:
    >>> from genzoo.data import bn_network_path
    >>> spec = read_bif(bn_network_path("asia"))
    >>> spec.parents["either"], spec.cpts["either"].shape
    (('lung', 'tub'), (2, 2, 2))
    >>> parse_bif(format_bif(spec)).cpts["dysp"].tolist() == spec.cpts["dysp"].tolist()
    True
"""

from __future__ import annotations

import bisect
import dataclasses
import gzip
import itertools
import math
import os
import re
import zlib
from typing import Mapping

import numpy as np

from inference.discrete import DEFAULT_MEMORY_BUDGET
from inference.errors import MemoryBudgetError, ModelError, ParseError

__all__ = [
    "NetworkSpec",
    "read_bif",
    "parse_bif",
    "format_bif",
    "write_bif",
]


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """A discrete Bayesian network as a file describes it.

    Attributes:
        name: the network's name.
        states: variable -> tuple of state names, in the order the file declares the variables.
        parents: variable -> tuple of parent names, in the order of the CPT's leading axes.
        cpts: variable -> float64 array of shape ``(*parent cardinalities, own cardinality)``:
            ``cpts[v][i_1, ..., i_m, k] = p(v = k | parents = (i_1, ..., i_m))``.
        lines: variable -> 1-based line of its probability block (its definition in XMLBIF), for
            error messages; empty when the spec was not read from a file.
        network_properties: the ``property`` statements of the network block, each the text
            between ``property`` and ``;`` (e.g. ``"author = me"``).
        properties: variable -> the ``property`` statements of its variable block.
        table_properties: variable -> the ``property`` statements of its probability block.
    """

    name: str
    states: Mapping[str, tuple[str, ...]]
    parents: Mapping[str, tuple[str, ...]]
    cpts: Mapping[str, np.ndarray]
    lines: Mapping[str, int] = dataclasses.field(default_factory=dict)
    network_properties: tuple[str, ...] = ()
    properties: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    table_properties: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------- file helpers
def _read_text(path) -> str:
    """The text of ``path``, gunzipped when the file starts with gzip's magic bytes."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as err:
        raise ParseError(f"cannot read the file: {err.strerror}", path) from err
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ParseError(f"corrupted gzip data: {err}", path) from err
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` (gzipped when the name ends in ``.gz``), atomically."""
    path = os.fspath(path)
    data = text.encode("utf-8")
    if path.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _line_of(text: str, offset: int) -> int:
    """1-based line number of character ``offset`` of ``text`` (one-off use)."""
    return text.count("\n", 0, offset) + 1


class _LineIndex:
    """Offsets -> 1-based line numbers by bisection over the newline positions."""

    def __init__(self, text: str):
        self.newlines = [m.start() for m in re.finditer("\n", text)]

    def __call__(self, offset: int) -> int:
        return bisect.bisect_left(self.newlines, offset) + 1


# --------------------------------------------------------------------------- BIF: lexical layer
# Comments and quoted strings are matched together so that '//' inside a string is kept.
_COMMENT_OR_STRING = re.compile(r'"[^"\n]*"|/\*.*?\*/|//[^\n]*|/\*', re.S)
# 'property ...;' statements right after '{' or ';' (so a variable named 'property' survives);
# a lookbehind, so that consecutive statements all match.
_PROPERTY = re.compile(r'(?<=[{;])(\s*)(property\b(?:"[^"\n]*"|[^;"])*;)')
_BRACE = re.compile(r'"[^"\n]*"|[{}]')
_HEADER_NETWORK = re.compile(r'network(?:\s+("[^"]*"|\S+))?\s*', re.S)
_HEADER_VARIABLE = re.compile(r'variable\s+("[^"]*"|[^\s{]+)\s*', re.S)
_HEADER_PROBABILITY = re.compile(r'probability\s*\(([^()]*)\)\s*', re.S)
_VARIABLE_BODY = re.compile(
    r'\s*type\s+(\w+)\s*\[\s*(\d+)\s*\]\s*\{([^{}]*)\}\s*;?\s*', re.S
)
_ENTRY = re.compile(r'\s*(?:(table|default)\b|\(([^()]*)\))([^;{}()]*);', re.S)
_PLAIN_ROWS = re.compile(r'(?:\s*\([^()"]*\)[0-9eE+\-.,\s]*;)*\s*')
_ROW = re.compile(r"\(([^()]*)\)([^;]*);")
_SEPARATORS = re.compile(r"[\s,]+")
_NOT_NUMERIC = re.compile(r"[^0-9eE+\-.,\s]")
_NAMES_COMMA = re.compile(r'"([^"]*)"|([^\s,"]+(?:[ \t]+[^\s,"]+)*)')
_NAMES_SPACE = re.compile(r'"([^"]*)"|([^\s,"]+)')
_PLAIN_NAME = re.compile(r'[^\s,;{}()\[\]|"/]+')


def _blank(match: re.Match) -> str:
    """The matched text with every character but newlines turned into a space (offsets kept)."""
    return re.sub(r"[^\n]", " ", match.group(0))


def _strip_comments(text: str, path: str) -> str:
    if "/*" not in text and "//" not in text:
        return text

    def replace(match: re.Match) -> str:
        token = match.group(0)
        if token.startswith('"'):
            return token
        if token == "/*":
            raise ParseError("comment '/*' is never closed", path, _line_of(text, match.start()))
        return _blank(match)

    return _COMMENT_OR_STRING.sub(replace, text)


def _strip_properties(text: str) -> tuple[str, list[tuple[int, str]]]:
    """The text with ``property`` statements blanked, and each statement's ``(offset, text)``
    (the text between ``property`` and ``;``, stripped)."""
    if "property" not in text:
        return text, []
    found = []

    def blank(m):
        found.append((m.start(2), m.group(2)[len("property"):-1].strip()))
        return m.group(1) + re.sub(r"[^\n]", " ", m.group(2))

    return _PROPERTY.sub(blank, text), found


def _split_names(text: str) -> list[str]:
    """Names separated by commas (names may hold inner spaces) or, without commas, by blanks;
    double quotes protect any character but a quote."""
    pattern = _NAMES_COMMA if "," in text else _NAMES_SPACE
    return [m.group(1) if m.group(1) is not None else m.group(2) for m in pattern.finditer(text)]


def _unquote(name: str) -> str:
    return name[1:-1] if len(name) >= 2 and name[0] == name[-1] == '"' else name


def _braces(text: str):
    """``(offset, '{' or '}')`` for every brace outside double quotes, in order."""
    if '"' in text:
        return [(m.start(), m.group(0)) for m in _BRACE.finditer(text) if m.group(0) in "{}"]
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # one code per character
    offsets = np.flatnonzero((codes == ord("{")) | (codes == ord("}")))
    return zip(offsets.tolist(), ["{" if c == ord("{") else "}" for c in codes[offsets].tolist()])


def _top_level_blocks(text: str, path: str):
    """Yield ``(header_start, open_brace, close_brace)`` for every top-level ``{ ... }`` block.

    Raises ParseError on a '}' without its '{' or a '{' that is never closed.
    """
    depth = 0
    stack: list[int] = []
    header_start = 0
    for offset, token in _braces(text):
        if token == "{":
            stack.append(offset)
            depth += 1
        else:
            if depth == 0:
                raise ParseError("unbalanced braces: '}' without a matching '{'", path,
                                 _line_of(text, offset))
            depth -= 1
            opened = stack.pop()
            if depth == 0:
                yield header_start, opened, offset
                header_start = offset + 1
                # an optional ';' after a block's closing brace
                rest = text[header_start: header_start + 64].lstrip()
                if rest.startswith(";"):
                    header_start = text.index(";", header_start) + 1
    if stack:
        raise ParseError("unbalanced braces: '{' is never closed", path, _line_of(text, stack[-1]))
    tail = text[header_start:]
    if tail.strip():
        offset = header_start + len(tail) - len(tail.lstrip())
        raise ParseError(f"unexpected text {tail.strip()[:30]!r} after the last block", path,
                         _line_of(text, offset))


# --------------------------------------------------------------------------- BIF: reader
def read_bif(path) -> NetworkSpec:
    """Read a BIF file (plain text or gzipped) into a :class:`NetworkSpec`.

    Raises:
        ParseError: with the path and 1-based line of the fault: unbalanced braces, an unknown
            variable or state, a wrong number of values, a non-number, a missing table, or
            corrupted gzip data.
        MemoryBudgetError: a table (typically one filled by ``default``) whose float64 entries
            would exceed ``inference.discrete.DEFAULT_MEMORY_BUDGET``, with its path and line.
    """
    path = os.fspath(path)
    text = _read_text(path)
    default_name = os.path.basename(path).split(".")[0] or "bayesnet"
    return parse_bif(text, path=path, default_name=default_name)


def parse_bif(text: str, *, path: str = "<string>", default_name: str = "bayesnet") -> NetworkSpec:
    """Parse the text of a BIF file (see :func:`read_bif`).

    Steps:
        1. blank out comments and ``property`` statements, keeping every newline (so offsets still
           give line numbers);
        2. cut the text into top-level ``header { body }`` blocks by matching braces;
        3. read ``variable`` blocks (states), then ``probability`` blocks (parents and tables, one
           NumPy conversion per table).
    """
    text, found = _strip_properties(_strip_comments(text, path))
    offsets = [o for o, _ in found]
    line_at = _LineIndex(text)

    def inside(opened, closed):
        lo, hi = bisect.bisect_left(offsets, opened), bisect.bisect_left(offsets, closed)
        return tuple(p for _, p in found[lo:hi])

    network_properties: tuple[str, ...] = ()
    properties: dict[str, tuple[str, ...]] = {}
    table_properties: dict[str, tuple[str, ...]] = {}
    name = default_name
    states: dict[str, tuple[str, ...]] = {}
    declared_at: dict[str, int] = {}
    probability_blocks = []

    # Steps 1-2: top-level blocks, classified by their header.
    for header_start, opened, closed in _top_level_blocks(text, path):
        header = text[header_start:opened]
        lead = len(header) - len(header.lstrip())
        header_offset = header_start + lead
        header = header.strip()
        if (match := _HEADER_NETWORK.fullmatch(header)) is not None:
            if match.group(1):
                name = _unquote(match.group(1))
            network_properties += inside(opened, closed)
        elif (match := _HEADER_VARIABLE.fullmatch(header)) is not None:
            var = _unquote(match.group(1))
            line = line_at(header_offset)
            if var in states:
                raise ParseError(f"variable {var!r} is declared twice (first at line "
                                 f"{declared_at[var]})", path, line)
            states[var] = _variable_states(var, text, opened + 1, closed, path, line_at)
            declared_at[var] = line
            if inside(opened, closed):
                properties[var] = inside(opened, closed)
        elif (match := _HEADER_PROBABILITY.fullmatch(header)) is not None:
            probability_blocks.append((match.group(1), header_offset, opened + 1, closed))
        else:
            word = header.split()[0] if header else "{"
            raise ParseError(
                f"expected a 'network', 'variable' or 'probability' block, found {word[:30]!r}",
                path, line_at(header_offset),
            )

    # Step 3: probability blocks.
    parents: dict[str, tuple[str, ...]] = {}
    cpts: dict[str, np.ndarray] = {}
    lines: dict[str, int] = {}
    for header, header_offset, start, end in probability_blocks:
        line = line_at(header_offset)
        var, pars = _probability_header(header, states, path, line)
        if var in cpts:
            raise ParseError(f"a second probability block for {var!r} (the first is at line "
                             f"{lines[var]})", path, line)
        cpts[var] = _probability_table(var, pars, states, text, start, end, path, line, line_at)
        parents[var] = pars
        if inside(start, end):
            table_properties[var] = inside(start, end)
        lines[var] = line

    for var in states:
        if var not in cpts:
            raise ParseError(f"variable {var!r} has no probability block", path, declared_at[var])
    return NetworkSpec(name=name, states=states, parents={v: parents[v] for v in states},
                       cpts={v: cpts[v] for v in states}, lines={v: lines[v] for v in states},
                       network_properties=network_properties, properties=properties,
                       table_properties=table_properties)


def _variable_states(var: str, text: str, start: int, end: int, path: str, line_at) -> tuple[str, ...]:
    body = text[start:end]
    match = _VARIABLE_BODY.fullmatch(body)
    if match is None:
        raise ParseError(f"malformed variable block of {var!r}: expected "
                         f"'type discrete [ k ] {{ state, ... }};'", path, line_at(start))
    kind, count, listed = match.group(1), int(match.group(2)), match.group(3)
    line = line_at(start + match.start(1))
    if kind != "discrete":
        raise ParseError(f"variable {var!r} has type {kind!r}; only 'discrete' is supported",
                         path, line)
    names = tuple(_split_names(listed))
    if len(names) != count:
        raise ParseError(f"variable {var!r} declares {count} states but lists {len(names)}: "
                         f"{list(names)}", path, line)
    if count == 0:
        raise ParseError(f"variable {var!r} has no states", path, line)
    if len(set(names)) != len(names):
        dup = next(s for s in names if names.count(s) > 1)
        raise ParseError(f"variable {var!r} lists state {dup!r} twice", path, line)
    return names


def _probability_header(header: str, states, path: str, line: int):
    """``X | A, B`` (or the old ``X A B``) -> ``('X', ('A', 'B'))``, every name checked."""
    if "|" in header:
        head, _, tail = header.partition("|")
        names = _split_names(head)
        if len(names) != 1:
            raise ParseError(f"probability header ( {header.strip()} ) must name one variable "
                             f"before '|'", path, line)
        names += _split_names(tail)
    else:
        names = _split_names(header)
    if not names:
        raise ParseError("empty probability header", path, line)
    for name in names:
        if name not in states:
            raise ParseError(f"probability block names unknown variable {name!r}", path, line)
    var, pars = names[0], tuple(names[1:])
    if len(set(names)) != len(names):
        raise ParseError(f"probability block of {var!r} names a variable twice: {names}", path, line)
    return var, pars


def _probability_table(var, pars, states, text, start, end, path, line, line_at) -> np.ndarray:
    """The CPT of ``var`` from the body ``text[start:end]`` of its probability block.

    Steps:
        1. split the body into ``table ...;``, ``default ...;`` and ``(states) ...;`` entries;
        2. map each row's parent state names to a flat row index;
        3. convert all numbers of the block in one NumPy call and place them.
    """
    k = len(states[var])
    cards = [len(states[p]) for p in pars]
    n_rows = math.prod(cards)  # a Python int: no overflow before the budget check
    if 8 * n_rows * k > DEFAULT_MEMORY_BUDGET:  # refused before NumPy tries to allocate it
        raise MemoryBudgetError(
            f"{path}, line {line}: the CPT of {var!r} ({k} states, {len(pars)} parents, {n_rows:,} parent "
            f"configurations) needs a table of {n_rows * k:,} entries ({8 * n_rows * k / 2**30:.3g} GiB in "
            f"float64), over the {DEFAULT_MEMORY_BUDGET / 2**30:.3g} GiB a table may take"
        )
    if pars:
        fast = _plain_rows(pars, states, text, start, end, k, n_rows)
        if fast is not None:
            return fast.reshape(*cards, k)
    lookup = [{s: i for i, s in enumerate(states[p])} for p in pars]
    strides = np.cumprod([1] + cards[::-1])[::-1][1:]

    table_entry = default_entry = None
    row_index: list[int] = []
    row_numbers: list[str] = []
    row_offsets: list[int] = []
    seen: dict[int, int] = {}

    # Step 1: entries.
    pos = start
    while True:
        match = _ENTRY.match(text, pos, end)
        if match is None:
            rest = text[pos:end]
            if rest.strip():
                offset = pos + len(rest) - len(rest.lstrip())
                raise ParseError(
                    f"in the probability block of {var!r}: expected '(states) values;', "
                    f"'table values;' or 'default values;', found {rest.strip()[:30]!r}",
                    path, line_at(offset),
                )
            break
        pos = match.end()
        keyword, config, numbers = match.group(1), match.group(2), match.group(3)
        entry_offset = match.start() + len(match.group(0)) - len(match.group(0).lstrip())
        if keyword == "table":
            if table_entry is not None:
                raise ParseError(f"probability block of {var!r} has two 'table' entries", path,
                                 line_at(entry_offset))
            table_entry = (numbers, match.start(3))
        elif keyword == "default":
            default_entry = (numbers, match.start(3))
        else:
            # Step 2: the row's parent configuration.
            names = _split_names(config)
            if len(names) != len(pars):
                raise ParseError(
                    f"row ({config.strip()}) of {var!r} names {len(names)} parent states; "
                    f"the parents are {list(pars)}", path, line_at(entry_offset))
            flat = 0
            for parent, table, stride, state in zip(pars, lookup, strides, names):
                if state not in table:
                    raise ParseError(f"unknown state {state!r} of parent {parent!r} in a row of "
                                     f"{var!r}; its states are {list(states[parent])}",
                                     path, line_at(entry_offset))
                flat += table[state] * int(stride)
            if flat in seen:
                raise ParseError(f"row ({config.strip()}) of {var!r} is given twice", path,
                                 line_at(entry_offset))
            seen[flat] = entry_offset
            row_index.append(flat)
            row_numbers.append(numbers)
            row_offsets.append(match.start(3))

    # Step 3: numbers. A 'default' as long as the whole table, without rows, is a table (pgmpy).
    if default_entry is not None and table_entry is None and not row_index and n_rows > 1:
        count = len(_SEPARATORS.split(default_entry[0].strip())) if default_entry[0].strip() else 0
        if count == k * n_rows:
            table_entry, default_entry = default_entry, None
    if table_entry is not None:
        if row_index or default_entry is not None:
            raise ParseError(f"probability block of {var!r} mixes 'table' with rows", path, line)
        values = _numbers([table_entry], k * n_rows, var, path, line_at)
        return np.ascontiguousarray(np.moveaxis(values.reshape(k, *cards), 0, -1))

    cpt = np.full((n_rows, k), np.nan)
    if row_index:
        for numbers, offset in zip(row_numbers, row_offsets):
            count = len(_SEPARATORS.split(numbers.strip())) if numbers.strip() else 0
            if count != k:
                raise ParseError(f"a row of {var!r} has {count} values; {var!r} has {k} states",
                                 path, line_at(offset))
        flat_values = _numbers(list(zip(row_numbers, row_offsets)), k * len(row_index), var,
                               path, line_at)
        cpt[np.asarray(row_index)] = flat_values.reshape(len(row_index), k)
    if default_entry is not None:
        missing = np.setdiff1d(np.arange(n_rows), np.asarray(row_index, dtype=np.int64))
        cpt[missing] = _numbers([default_entry], k, var, path, line_at)
    elif len(row_index) < n_rows:
        first = int(np.setdiff1d(np.arange(n_rows), np.asarray(row_index, dtype=np.int64))[0])
        config = np.unravel_index(first, cards) if cards else ()
        names = ", ".join(states[p][i] for p, i in zip(pars, config))
        raise ParseError(f"probability block of {var!r} has no row for parent configuration "
                         f"({names}) and no 'default'", path, line)
    return cpt.reshape(*cards, k)


def _plain_rows(pars, states, text, start, end, k, n_rows):
    """Fast path for the common block: exactly one ``(a, b) p1, ..., pk;`` row per parent
    configuration, plain names, plain numbers. None when anything differs, and the careful
    entry-by-entry reader of :func:`_probability_table` then finds and reports the fault."""
    if _PLAIN_ROWS.fullmatch(text, start, end) is None:
        return None
    rows = _ROW.findall(text, start, end)
    if len(rows) != n_rows:
        return None
    labels = itertools.product(*(states[p] for p in pars))
    if any(" " in s or "\t" in s or "," in s for p in pars for s in states[p]):
        index_of = {names: i for i, names in enumerate(labels)}
        flat = [index_of.get(tuple(name.strip() for name in config.split(","))) for config, _ in rows]
    else:  # no blank in any name: a configuration's key is its text without blanks
        index_of = {",".join(names): i for i, names in enumerate(labels)}
        flat = [index_of.get("".join(config.split())) for config, _ in rows]
    if None in flat or len(set(flat)) != n_rows:
        return None
    split_rows = [values.replace(",", " ").split() for _, values in rows]
    if any(len(row) != k for row in split_rows):
        return None
    try:
        values = np.array(list(itertools.chain.from_iterable(split_rows)), dtype=np.float64)
    except ValueError:
        return None
    if not np.isfinite(values).all():
        return None
    cpt = np.empty((n_rows, k))
    cpt[np.asarray(flat)] = values.reshape(n_rows, k)
    return cpt


def _numbers(pieces, expected: int, var: str, path: str, line_at) -> np.ndarray:
    """Convert runs of numbers separated by commas or blanks into one float64 array.

    ``pieces`` lists ``(text, offset)`` runs; ``line_at(offset)`` gives the line of an offset, so a
    wrong count or a bad token is reported at its own line.
    """
    joined = " ".join(piece for piece, _ in pieces).strip()
    tokens = _SEPARATORS.split(joined) if joined else []
    if len(tokens) != expected:
        raise ParseError(f"the table of {var!r} has {len(tokens)} values; expected {expected}",
                         path, line_at(pieces[0][1]))
    values = None
    if _NOT_NUMERIC.search(joined) is None:
        try:
            values = np.array(tokens, dtype=np.float64)
        except ValueError:
            values = None
    if values is not None and np.isfinite(values).all():
        return values
    # Slow path, errors only: find the offending token and its line.
    for piece, offset in pieces:
        for token in re.finditer(r"[^\s,]+", piece):
            word = token.group(0)
            try:
                ok = _NOT_NUMERIC.search(word) is None and bool(np.isfinite(float(word)))
            except ValueError:
                ok = False
            if not ok:
                raise ParseError(f"{word!r} in the table of {var!r} is not a finite number",
                                 path, line_at(offset + token.start()))
    raise ParseError(f"the table of {var!r} holds a value that is not a number", path,
                     line_at(pieces[0][1]))


# --------------------------------------------------------------------------- BIF: writer
def _bif_name(name: str, what: str) -> str:
    """A name as BIF prints it: bare when it is one plain word, quoted otherwise."""
    if _PLAIN_NAME.fullmatch(name):
        return name
    if '"' in name or "\n" in name:
        raise ModelError(f"{what} {name!r} holds a quote or a newline and cannot be written to BIF")
    return f'"{name}"'


def _format_values(values: np.ndarray) -> str:
    """Shortest round-trip strings (``repr`` of float64) joined by ', '."""
    return ", ".join(map(repr, np.asarray(values, dtype=np.float64).tolist()))


def _format_properties(properties) -> str:
    """``  property <text>;`` lines; a text holding ';', '{' or '}' cannot be read back."""
    for text in properties:
        if any(c in text for c in ";{}\n"):
            raise ModelError(f"property {text!r} holds ';', a brace or a newline and cannot be written to BIF")
    return "".join(f"  property {text};\n" for text in properties)


def format_bif(spec: NetworkSpec) -> str:
    """The BIF text of ``spec``: variables in the spec's order, one row per parent configuration
    (parents' states in row-major order), tables for variables without parents."""
    out = [f"network {_bif_name(spec.name, 'network name')} {{\n{_format_properties(spec.network_properties)}}}\n"]
    for var, names in spec.states.items():
        states = ", ".join(_bif_name(s, f"state of {var!r}") for s in names)
        out.append(f"variable {_bif_name(var, 'variable')} {{\n"
                   f"  type discrete [ {len(names)} ] {{ {states} }};\n"
                   f"{_format_properties(spec.properties.get(var, ()))}}}\n")
    for var in spec.states:
        pars = tuple(spec.parents.get(var, ()))
        table = np.asarray(spec.cpts[var], dtype=np.float64)
        head = _bif_name(var, "variable")
        props = _format_properties(spec.table_properties.get(var, ()))
        if not pars:
            out.append(f"probability ( {head} ) {{\n{props}  table {_format_values(table)};\n}}\n")
            continue
        out.append(f"probability ( {head} | {', '.join(_bif_name(p, 'variable') for p in pars)} ) {{\n{props}")
        rows = table.reshape(-1, table.shape[-1])
        labels = itertools.product(*[[_bif_name(s, "state") for s in spec.states[p]] for p in pars])
        out.extend(f"  ({', '.join(label)}) {_format_values(row)};\n" for label, row in zip(labels, rows))
        out.append("}\n")
    return "".join(out)


def write_bif(path, spec: NetworkSpec) -> None:
    """Write ``spec`` as BIF to ``path`` (gzipped when ``path`` ends in ``.gz``)."""
    _write_text(path, format_bif(spec))


# XMLBIF lives in pgm.xmlbif, which imports this module; re-exported lazily so neither import order cycles.
_XMLBIF = ("read_xmlbif", "parse_xmlbif", "format_xmlbif", "write_xmlbif")


def __getattr__(name):
    if name in _XMLBIF:
        from pgm import xmlbif

        return getattr(xmlbif, name)
    raise AttributeError(f"module 'pgm.bif' has no attribute {name!r}")
