"""Log-space tensor contraction: the kernels under exact inference.

A discrete model with factors :math:`\\phi_f` over scopes :math:`S_f` has the normaliser

.. math::

    Z = \\sum_x \\prod_f \\phi_f(x_{S_f}), \\qquad \\log Z = \\log \\sum_x \\exp \\sum_f \\log \\phi_f(x_{S_f}),

a single tensor contraction (an einsum with an empty output). Variable elimination computes it as a
sequence of *pairwise* contractions, each summing out the variables that no other remaining table
needs. The order decides the cost: this module plans it once per structure, then runs it on any
tables of that structure.

1. **Plan** (:func:`inference.elimination.plan_contraction`, re-exported here; pure Python,
   cached by the caller): candidate elimination orders (greedy min-fill and min-weight on the
   interaction graph) and opt_einsum's greedy paths are turned into pairwise steps; the
   candidate with the fewest operations wins, ties broken by the largest intermediate table.
2. **Inside pass** (:meth:`Program.inside`): each step is a log-sum-exp einsum
   (:class:`LogEinsum`): every operand is shifted by its maximum over the axes it sums out (a
   -inf maximum, an all-zero slice, by 0), the einsum runs on the exponentials, and the log of the
   result gets the shifts back. Nothing underflows unless two operands' large entries sit on
   disjoint positions of a summed axis more than ~700 nats apart; log 0 = -inf entries
   (deterministic CPTs) are exact.
3. **Outside pass** (:meth:`Program.posteriors`): walking the steps backwards, the outside message
   of an operand is the log-einsum of its step's outside message with the step's other operand:
   the reverse-mode derivative of the inside pass, so that
   :math:`p(x_{S_f}) = \\partial \\log Z / \\partial \\log \\phi_f = \\exp(\\log \\phi_f +
   \\text{out}_f - \\log Z)` for every factor at the cost of about two more passes
   (Darwiche, 2003; Eisner, 2016).
4. **Max-product and backtracking** (:meth:`Program.max_product`, :meth:`Program.backtrack`): the
   same steps with :math:`\\max` for :math:`\\sum`; then, in reverse, every variable a step
   eliminated is decoded from that step's operands sliced at the already decoded variables:
   argmax gives the MAP assignment; a categorical draw after the inside pass gives exact joint
   samples (forward-filter backward-sample on the contraction tree), many at once.
5. **Linear space** (:meth:`Program.linear_inside`, :meth:`Program.linear_marginals`): the
   inside and outside passes on :math:`\\phi_f` itself, one plain einsum (or matmul) per step
   and no exp or log. Each table carries bounds on the logs of its largest and smallest
   non-zero entries; a product-sum's bounds are the sums of its operands' (plus the log of
   the number of terms), and only where they would leave :math:`[-650, 650]` nats (the one
   rule of every pass, :data:`inference.discrete.LINEAR_RANGE`) are the operands rescaled (the scale kept in log space) and measured. So no number underflows or
   overflows, zeros stay exact, and where even a rescaled product could underflow the pass
   declines and the log-space one runs. On small networks, where the per-step cost is the
   call itself, this is several times faster than log-sum-exp.

The kernels run on NumPy arrays: a plan is executed step by step with precomputed einsum
subscripts, alignments and shifts, so a new structure costs a plan (milliseconds) and no
compilation. An optional leading batch axis (one table per evidence row) flows through
every log-space pass.

References:
    Zhang and Poole (1994). A simple approach to Bayesian network computations.
    Dechter (1999). Bucket elimination: a unifying framework for reasoning.
    Darwiche (2003). A differential approach to inference in Bayesian networks.
    Eisner (2016). Inside-outside and forward-backward algorithms are just backprop.
    Smith and Gray (2018). opt_einsum: a Python package for optimizing contraction order for einsum-like expressions.

A private name of NumPy is read: ``numpy._core.multiarray.c_einsum``, the C kernel that
``np.einsum`` calls when ``optimize=False``; calling it directly skips the Python wrapper's argument
parsing, which costs more than the contraction itself on the small tables of a plan's steps. No
public route reaches it; where it is missing (another NumPy layout), ``np.einsum`` is used.

Example:
    >>> import numpy as np
    >>> from inference.contract import Program, plan_contraction
    >>> plan = plan_contraction([(0,), (0, 1)], sizes=[2, 3])
    >>> tables = [np.log([0.4, 0.6]), np.log([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])]
    >>> log_z, post = Program(plan).posteriors(tables)
    >>> abs(float(log_z)) < 1e-12, np.round(post[1].sum(0), 2)
    (True, array([0.26, 0.32, 0.42]))
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import opt_einsum as oe

from inference.discrete import LINEAR_RANGE  # noqa: F401  (the rule lives there)
from inference.elimination import Plan, Step, _numel, plan_contraction  # noqa: F401  (Plan, Step, plan_contraction re-exported)

try:  # the C kernel under np.einsum (which calls it as is when optimize=False), without the wrapper
    from numpy._core.multiarray import c_einsum as _einsum
except ImportError:  # pragma: no cover - NumPy < 2
    try:
        from numpy.core.multiarray import c_einsum as _einsum
    except ImportError:
        _einsum = np.einsum


# ============================================================================ kernels
BATCH = -1
"""The variable id of a batch axis (evidence rows): always the first axis of a table that has it."""


def _letters(scopes, out):
    ids = list(dict.fromkeys(v for s in (*scopes, out) for v in s))
    symbol = {v: oe.get_symbol(k) for k, v in enumerate(ids)}
    return ",".join("".join(symbol[v] for v in s) for s in scopes) + "->" + "".join(symbol[v] for v in out)


def _aligner(scope, target):
    """(permutation, expand axes) that lay a table over ``scope`` (a subset of ``target``) out
    along ``target``, with size-1 axes for the variables it lacks."""
    order = [scope.index(v) for v in target if v in scope]
    expand = tuple(a for a, v in enumerate(target) if v not in scope)
    return (None if order == sorted(order) else tuple(order)), expand


def _align(x, aligner):
    perm, expand = aligner
    if perm is not None:
        x = np.transpose(x, perm)
    if not expand:
        return x
    shape = list(np.shape(x))
    for a in expand:
        shape.insert(a, 1)
    return np.reshape(x, shape)


FLOOR = -1e300
"""Shifts are floored here: a slice whose largest log entry is below it counts as all zeros."""

MATMUL_AT = 4096
"""Pairwise steps whose union has at least this many entries contract by BLAS matmul."""


class _Matmul:
    """The linear-space pairwise contraction as one batched matrix product.

    Variables only one operand holds and the output drops are summed first; the rest are
    grouped as batch (both operands and the output), left / right (one operand and the
    output) and contracted (both operands, not the output).
    """

    def __init__(self, a, b, out):
        self.a_sum = tuple(k for k, v in enumerate(a) if v not in b and v not in out)
        self.b_sum = tuple(k for k, v in enumerate(b) if v not in a and v not in out)
        a_rest = [v for v in a if v in b or v in out]
        b_rest = [v for v in b if v in a or v in out]
        batch = [v for v in out if v in a and v in b]
        left = [v for v in out if v in a and v not in b]
        right = [v for v in out if v in b and v not in a]
        contracted = [v for v in a_rest if v in b and v not in out]
        self.a_perm = tuple(a_rest.index(v) for v in batch + left + contracted)
        self.b_perm = tuple(b_rest.index(v) for v in batch + contracted + right)
        self.counts = (len(batch), len(left), len(contracted), len(right))
        self.out_perm = tuple((batch + left + right).index(v) for v in out)

    def __call__(self, ea, eb):
        nb, nl, nc, nr = self.counts
        if self.a_sum:
            ea = ea.sum(axis=self.a_sum)
        if self.b_sum:
            eb = eb.sum(axis=self.b_sum)
        ea, eb = ea.transpose(self.a_perm), eb.transpose(self.b_perm)
        sa, sb = ea.shape, eb.shape
        batch, left, right = sa[:nb], sa[nb : nb + nl], sb[nb + nc :]
        size = math.prod
        product = np.matmul(
            ea.reshape(size(batch), size(left), size(sa[nb + nl :])),
            eb.reshape(size(batch), size(sb[nb : nb + nc]), size(right)),
        )
        return product.reshape(batch + left + right).transpose(self.out_perm)


class LogEinsum:
    """:math:`\\log \\sum_{\\text{summed}} \\prod_i \\exp(x_i)` onto ``out`` for log tables over ``scopes``.

    Each operand is shifted by its maximum over the axes it sums out (kept as a function of the
    axes it keeps, floored at :data:`FLOOR` so that an all-zero slice stays exactly zero); the
    product-sum runs on the exponentials (an einsum, or a BLAS matmul for large pairs) and the
    shifts are added back after the log. Every variable of ``out`` must appear in some operand.
    Call it inside ``np.errstate(divide="ignore")``: log 0 = -inf is expected.
    """

    def __init__(self, scopes, out, sizes=None):
        self.scopes = tuple(tuple(s) for s in scopes)
        self.out = tuple(out)
        self.identity = len(self.scopes) == 1 and self.scopes[0] == self.out
        self.summed, self.shift_perm, self.shift_axes = [], [], []
        for s in self.scopes:
            summed = tuple(a for a, v in enumerate(s) if v not in out)
            kept_in_out_order = [s.index(v) for v in self.out if v in s]
            self.summed.append(summed)
            self.shift_perm.append(tuple(kept_in_out_order) + summed)
            self.shift_axes.append(tuple(s.index(v) if v in s else None for v in self.out))
        self.subscripts = _letters(self.scopes, self.out)
        self.matmul = None
        if len(self.scopes) == 2 and sizes is not None:
            union = {v for s in self.scopes for v in s}
            if math.prod(1 if v == BATCH else sizes[v] for v in union) >= MATMUL_AT:
                self.matmul = _Matmul(self.scopes[0], self.scopes[1], self.out)

    def __call__(self, *tables):
        if self.identity:
            return tables[0]
        shifted, shift = [], None
        for x, summed, perm, axes in zip(tables, self.summed, self.shift_perm, self.shift_axes):
            m = x.max(axis=summed, keepdims=True) if summed else x
            m = np.maximum(m, FLOOR)
            shifted.append(np.exp(x - m))
            if axes:
                shape = x.shape
                m = m.transpose(perm).reshape(tuple(1 if a is None else shape[a] for a in axes))
                shift = m if shift is None else shift + m
            elif shift is None:
                shift = m.reshape(())
            else:
                shift = shift + m.reshape(())
        if self.matmul is not None:
            total = self.matmul(*shifted)
        else:
            total = np.einsum(self.subscripts, *shifted)
        return np.log(total) + shift


class MaxEinsum:
    """:math:`\\max_{\\text{summed}} \\sum_i x_i` onto ``out``: max-product in log space."""

    def __init__(self, scopes, out):
        self.out = tuple(out)
        self.union = self.out + tuple(dict.fromkeys(v for s in scopes for v in s if v not in out))
        self.align = tuple(_aligner(tuple(s), self.union) for s in scopes)
        self.axes = tuple(range(len(self.out), len(self.union)))

    def __call__(self, *tables):
        aligned = [_align(x, a) for x, a in zip(tables, self.align)]
        joint = np.broadcast_to(sum(aligned), np.broadcast_shapes(*(np.shape(x) for x in aligned)))
        return np.max(joint, axis=self.axes) if self.axes else joint


_ONE = np.ones(())
_ONE.setflags(write=False)


def _log_count(scopes, out, sizes) -> float:
    """Log of the number of joint states a product-sum over ``scopes`` onto ``out`` adds up."""
    summed = {v for s in scopes for v in s if v not in out and v != BATCH}
    return float(sum(math.log(sizes[v]) for v in summed))


def _rescale(tensors, hi, lo, scale, ids):
    """Rescale ``tensors[i]`` for ``i`` in ``ids`` to a largest entry of one (``scale[i]`` takes the
    log of the factor, unless ``scale`` is None); ``hi[i]``, ``lo[i]``: the logs of the new largest
    (0) and smallest non-zero entries, measured."""
    for i in ids:
        x = tensors[i]
        top = float(x.max())
        if top > 0:
            low = float(np.min(x, where=x > 0, initial=np.inf))
            tensors[i] = x / top
            if scale is not None:
                scale[i] += math.log(top)
            hi[i], lo[i] = 0.0, math.log(low) - math.log(top)
        else:  # all zero: every product with it is an exact zero
            hi[i] = lo[i] = 0.0


def _linear_kernel(scopes, out, sizes):
    """The product-sum of linear tables over ``scopes`` onto ``out``: None for a copy, a BLAS
    matmul for a large pair, else the einsum with precomputed subscripts."""
    scopes, out = [tuple(s) for s in scopes], tuple(out)
    if len(scopes) == 1 and scopes[0] == out:
        return None
    if len(scopes) == 2:
        union = {v for s in scopes for v in s}
        if math.prod(1 if v == BATCH else sizes[v] for v in union) >= MATMUL_AT:
            return _Matmul(scopes[0], scopes[1], out)
    return functools.partial(_einsum, _letters(scopes, out))


class Program:
    """A plan made executable on NumPy log tables: no compilation, reusable for any values.

    ``batched[i]`` says that input ``i`` carries a leading batch axis (one table per evidence
    row); the batch axis then flows to every table computed from it, and the results (log Z,
    posteriors) are per row.

    Passes:
        :meth:`inside`: sum-product, every tensor and :math:`\\log Z`.
        :meth:`posteriors`: :math:`p(x_{S_f})` of chosen inputs by the outside pass
            :math:`\\text{out}(t_i) = \\log \\sum \\exp(\\text{out}(t) + t_j)` for each step
            :math:`t = t_i \\otimes t_j` (the reverse-mode derivative of the inside pass),
            :math:`p = \\exp(t_i + \\text{out}(t_i) - \\log Z)`.
        :meth:`max_product` and :meth:`backtrack`: MAP and exact sampling.
    """

    def __init__(self, plan: Plan, batched: Sequence[bool] | None = None):
        self.plan = plan
        n_in = len(plan.scopes)
        flags = list(batched) if batched is not None else [False] * n_in
        scopes = [((BATCH,) if b else ()) + s for s, b in zip(plan.scopes, flags)]
        self.forward = []
        for step in plan.steps:
            b = any(flags[i] for i in step.operands)
            out = ((BATCH,) if b else ()) + step.out
            self.forward.append(LogEinsum([scopes[i] for i in step.operands], out, plan.sizes))
            scopes.append(out)
            flags.append(b)
        self.scopes, self.flags = tuple(scopes), tuple(flags)
        self.batched = any(flags)
        self.consumed = frozenset(i for step in plan.steps for i in step.operands)
        self.roots = tuple(i for i in range(len(scopes)) if i not in self.consumed)
        self.parent = {i: n_in + k for k, step in enumerate(plan.steps) for i in step.operands}
        self._outside = self._outside_kernels()
        self._readers, self._sources = {}, {}
        self._max = None
        self._linear = None
        self._linear_readers = {}

    # ------------------------------------------------------------------ inside
    def inside(self, tables):
        """Every tensor of the sum-product pass, and log Z (a scalar, or one per batch row)."""
        tensors = list(tables)
        with np.errstate(divide="ignore"):
            for step, kernel in zip(self.plan.steps, self.forward):
                tensors.append(kernel(*(tensors[i] for i in step.operands)))
        return tensors, self._total(tensors)

    def _total(self, tensors):
        total = np.zeros(())
        for i, t in enumerate(tensors):
            if i not in self.consumed:
                total = total + t
        return total

    # ------------------------------------------------------------------ outside
    def _outside_kernels(self):
        """Per step (last first) and operand: the kernel of the operand's outside message, over
        the operand's variables that the message depends on (the others broadcast)."""
        kernels = []
        n_in = len(self.plan.scopes)
        scope_of = {}  # tensor id -> scope of its (compact) outside message
        for k in range(len(self.plan.steps) - 1, -1, -1):
            step, out_id = self.plan.steps[k], n_in + k
            msg_scope = scope_of.get(out_id, ())
            for i in step.operands:
                others = tuple(j for j in step.operands if j != i)
                sources = [msg_scope] + [self.scopes[j] for j in others]
                present = {v for s in sources for v in s}
                target = tuple(v for v in self.scopes[i] if v in present)
                if BATCH in present and BATCH not in target:
                    target = (BATCH,) + target
                scope_of[i] = target
                kernels.append((i, out_id, others, LogEinsum(sources, target, self.plan.sizes)))
        self.outside_scope = scope_of
        return tuple(kernels)

    def _reader(self, wanted):
        """For ``wanted`` inputs: the outside kernels to run and how to lay each message out."""
        if wanted not in self._readers:
            needed = set(wanted)
            for i in wanted:
                while i in self.parent:
                    i = self.parent[i]
                    needed.add(i)
            kernels = tuple(k for k in self._outside if k[0] in needed)
            layout = []
            for i in wanted:
                full = ((BATCH,) if self.batched else ()) + self.plan.scope_of(i)
                layout.append(
                    (i, _aligner(self.scopes[i], full), _aligner(self.outside_scope.get(i, ()), full), len(full))
                )
            self._readers[wanted] = (kernels, tuple(layout))
        return self._readers[wanted]

    def posteriors(self, tables, wanted=None):
        """``(log Z, {tensor id: p(x_scope | e)})`` for the ``wanted`` tensors (default: all
        inputs; step outputs have ids from ``len(tables)`` on), each over the tensor's variables
        (with a leading batch axis when the program is batched)."""
        wanted = tuple(range(len(self.plan.scopes))) if wanted is None else tuple(wanted)
        kernels, layout = self._reader(wanted)
        tensors, log_z = self.inside(tables)
        messages = {}
        result = {}
        with np.errstate(divide="ignore", invalid="ignore"):  # NaN only where log Z = -inf: callers raise
            for i, out_id, others, kernel in kernels:
                msg = messages.get(out_id)
                messages[i] = kernel(np.zeros(()) if msg is None else msg, *(tensors[j] for j in others))
            for i, table_align, msg_align, ndim in layout:
                msg = messages.get(i)
                lz = np.reshape(log_z, (-1,) + (1,) * (ndim - 1)) if self.batched else log_z
                x = _align(tensors[i], table_align)
                if msg is not None:
                    x = x + _align(msg, msg_align)
                result[i] = np.exp(x - lz)
        return log_z, result

    def marginal_sources(self, variables):
        """Where to read each variable's marginal: ``(tensor ids, [(tensor, axes to sum)])``.

        The tensor holding the variable nearest the root of the contraction tree (fewest steps
        to the end; then the smallest), so the outside pass stops as high as it can.
        """
        variables = tuple(variables)
        if variables not in self._sources:
            n_in, steps = len(self.plan.scopes), self.plan.steps
            depth = {}
            for t in range(n_in + len(steps) - 1, -1, -1):
                depth[t] = depth[self.parent[t]] + 1 if t in self.parent else 0
            holders = {v: [] for v in variables}
            for t in range(n_in + len(steps)):
                for v in self.plan.scope_of(t):
                    if v in holders:
                        holders[v].append(t)
            chosen = []
            for v in variables:
                t = min(holders[v], key=lambda t: (depth[t], _numel(self.plan.scope_of(t), self.plan.sizes), t))
                axis = self.plan.scope_of(t).index(v)
                chosen.append((t, tuple(a for a in range(len(self.plan.scope_of(t))) if a != axis)))
            self._sources[variables] = (tuple(sorted({t for t, _ in chosen})), tuple(chosen))
        return self._sources[variables]

    def marginals(self, tables, variables):
        """``(log Z, [p(x_v | e) for v in variables])`` (unbatched), read by :meth:`marginal_sources`."""
        wanted, chosen = self.marginal_sources(variables)
        log_z, posts = self.posteriors(tables, wanted)
        out = []
        for t, axes in chosen:
            m = posts[t].sum(axis=axes) if axes else posts[t]
            out.append(m / m.sum())
        return log_z, out

    # ------------------------------------------------------------------ linear space
    def _linear_kernels(self):
        """The inside and outside kernels on linear tables, each with the log of the number of
        joint states it sums over: ``(forward, outside)``, entries ``(kernel or None for a
        copy, operand ids, log count)`` and ``(operand id, step output id, others, kernel, log count)``."""
        if self._linear is None:
            sizes, n_in = self.plan.sizes, len(self.plan.scopes)
            forward = tuple(
                (_linear_kernel([self.scopes[i] for i in step.operands], self.scopes[n_in + k], sizes),
                 step.operands, _log_count([self.scopes[i] for i in step.operands], self.scopes[n_in + k], sizes))
                for k, step in enumerate(self.plan.steps)
            )
            outside = tuple(
                (i, out_id, others, _linear_kernel(k.scopes, k.out, sizes), _log_count(k.scopes, k.out, sizes))
                for i, out_id, others, k in self._outside
            )
            self._linear = (forward, outside)
        return self._linear

    def _linear_reader(self, variables):
        """For :meth:`linear_marginals`: the outside kernels to run and, per variable, the
        einsum that reads its marginal off its source tensor and that tensor's outside message."""
        if variables not in self._linear_readers:
            wanted, chosen = self.marginal_sources(variables)
            kernels, _ = self._reader(wanted)
            forward, outside = self._linear_kernels()
            needed = {k[0] for k in kernels}
            steps = tuple(k for k in outside if k[0] in needed)
            reads, offsets, offset = [], [], 0
            for v, (t, _) in zip(variables, chosen):
                scope = self.scopes[t]
                msg = self.outside_scope.get(t) if t in self.consumed else None
                operands = [scope] if msg is None else [scope, msg]
                size = self.plan.sizes[v]
                reads.append((t, msg is not None, _letters(operands, (v,)), offset, offset + size,
                              _log_count(operands, (v,), self.plan.sizes)))
                offsets.append(offset)
                offset += size
            starts = np.asarray(offsets, dtype=np.intp)
            sizes = np.diff(np.asarray(offsets + [offset], dtype=np.intp))
            self._linear_readers[variables] = (forward, steps, tuple(reads), starts, sizes, offset)
        return self._linear_readers[variables]

    def linear_inside(self, tables, lows):
        """The sum-product pass on linear tables: ``(log Z, tensors, hi, lo, scale)``, or None.

        ``tensors[i]`` holds tensor ``i`` divided by ``exp(scale[i])``; ``hi[i]`` and ``lo[i]``
        bound the logs of its largest and smallest non-zero entries. Arguments and the
        rescaling rule as in :meth:`linear_marginals`.
        """
        forward, _ = self._linear_kernels()
        tensors = list(tables)
        hi = [0.0] * len(tensors)  # log bound of the largest entry
        lo = [float(x) for x in lows]  # log bound of the smallest non-zero entry
        scale = [0.0] * len(tensors)  # tensors[i] holds the true table times exp(-scale[i])
        for kernel, ops, count in forward:
            h, l, s = count, 0.0, 0.0
            for i in ops:
                h += hi[i]
                l += lo[i]
            if l < -LINEAR_RANGE or h > LINEAR_RANGE:
                _rescale(tensors, hi, lo, scale, ops)
                h, l = count + sum(hi[i] for i in ops), sum(lo[i] for i in ops)
                if l < -LINEAR_RANGE or h > LINEAR_RANGE:
                    return None
            for i in ops:
                s += scale[i]
            if kernel is None:
                tensors.append(tensors[ops[0]])
            elif len(ops) == 2:
                tensors.append(kernel(tensors[ops[0]], tensors[ops[1]]))
            else:
                tensors.append(kernel(*[tensors[i] for i in ops]))
            hi.append(h)
            lo.append(l)
            scale.append(s)
        log_z = 0.0
        for i in self.roots:
            log_z += math.log(float(tensors[i])) + scale[i] if tensors[i] > 0 else -math.inf
        return log_z, tensors, hi, lo, scale

    def linear_marginals(self, tables, variables, lows):
        """``(log Z, flat, bounds)``: the normaliser and every marginal on *linear* tables, or
        None where linear arithmetic cannot keep every number in the normal float64 range.

        The same inside and outside passes as :meth:`marginals`, on :math:`\\phi_f` instead of
        :math:`\\log \\phi_f`: each step is one product-sum (an einsum or a BLAS matmul), with
        no shift, exp or log. Every table carries bounds on the logs of its largest entry and
        of its smallest non-zero entry; a product-sum over some tables has its non-zero
        entries between the sum of their lower bounds and the sum of their upper bounds plus
        the log of the number of joint states summed. Only when that interval would leave
        :math:`[-L, L]` (:data:`LINEAR_RANGE`) are the step's operands rescaled to a largest
        entry of one (the scale kept in log space) and their smallest entry measured; if even
        then a product could underflow, the answer is None and the caller runs the log-space
        pass. So nothing is ever rounded to zero or infinity: a zero is an exact zero, and
        :math:`Z = 0` (evidence of probability zero) gives :math:`\\log Z = -\\infty`.
        The marginals need no scale at all: each is one product-sum of a tensor and its
        outside message, normalised to sum to one.

        Args:
            tables: the linear input tables, each with largest entry at most one.
            variables: the variable ids whose marginals to read.
            lows: per table, a lower bound of the log of its smallest non-zero entry (<= 0).

        Returns:
            ``flat[a:b]`` for ``(a, b)`` in ``bounds`` is :math:`p(x_v \\mid e)` of
            ``variables[k]``, summing to one (zeros when :math:`Z = 0`). Unbatched programs only.
        """
        variables = tuple(variables)
        _, outside, reads, offsets, sizes, total = self._linear_reader(variables)
        inside = self.linear_inside(tables, lows)
        if inside is None:
            return None
        log_z, tensors, hi, lo, scale = inside
        flat = np.zeros(total)
        bounds = [(a, b) for _, _, _, a, b, _ in reads]
        if log_z == -math.inf:
            return log_z, flat, bounds
        n = len(tensors)
        messages, mhi, mlo = [None] * n, [0.0] * n, [0.0] * n
        for i, out_id, others, kernel, count in outside:
            msg = messages[out_id]
            if msg is None:
                messages[out_id] = msg = _ONE
            h, l = mhi[out_id] + count, mlo[out_id]
            for j in others:
                h += hi[j]
                l += lo[j]
            if l < -LINEAR_RANGE or h > LINEAR_RANGE:
                _rescale(messages, mhi, mlo, None, (out_id,))
                _rescale(tensors, hi, lo, scale, others)
                h = mhi[out_id] + count + sum(hi[j] for j in others)
                l = mlo[out_id] + sum(lo[j] for j in others)
                if l < -LINEAR_RANGE or h > LINEAR_RANGE:
                    return None
            msg = messages[out_id]
            messages[i] = msg if kernel is None else kernel(msg, *[tensors[j] for j in others])
            mhi[i], mlo[i] = h, l
        for t, with_msg, subscripts, a, b, count in reads:
            h, l = hi[t] + count, lo[t]
            if with_msg:
                h += mhi[t]
                l += mlo[t]
            if l < -LINEAR_RANGE or h > LINEAR_RANGE:
                _rescale(tensors, hi, lo, scale, (t,))
                h, l = hi[t] + count, lo[t]
                if with_msg:
                    _rescale(messages, mhi, mlo, None, (t,))
                    h += mhi[t]
                    l += mlo[t]
                if l < -LINEAR_RANGE or h > LINEAR_RANGE:
                    return None
            if with_msg:
                _einsum(subscripts, tensors[t], messages[t], out=flat[a:b])
            else:
                _einsum(subscripts, tensors[t], out=flat[a:b])
        if total:
            flat /= np.repeat(np.add.reduceat(flat, offsets), sizes)
        return log_z, flat, bounds

    # ------------------------------------------------------------------ max-product, sampling
    def max_product(self, tables):
        """``(max_x log phi(x), tensors)`` of the max-product pass (unbatched inputs only)."""
        if self._max is None:
            self._max = [
                MaxEinsum([self.plan.scope_of(i) for i in step.operands], step.out) for step in self.plan.steps
            ]
        tensors = list(tables)
        for step, kernel in zip(self.plan.steps, self._max):
            tensors.append(kernel(*(tensors[i] for i in step.operands)))
        return self._total(tensors), tensors

    def backtrack(self, tensors, n: int, choose):
        """Decode the eliminated variables of ``n`` joint draws, last step first.

        Args:
            tensors: from :meth:`max_product` (MAP) or :meth:`inside` (exact sampling).
            n: the number of assignments decoded side by side.
            choose: ``choose(step_number, log_weights (n, J)) -> (n,) indices`` over the joint
                states of the step's eliminated variables: argmax, or a categorical draw.

        Returns:
            ``{variable id: (n,) int64 states}`` for every variable a step eliminated.
        """
        plan, decoded = self.plan, {}
        for k in range(len(plan.steps) - 1, -1, -1):
            step = plan.steps[k]
            if not step.elim:
                continue
            shape = tuple(plan.sizes[v] for v in step.elim)
            weights = np.zeros((n,) + shape)
            for i in step.operands:
                scope = plan.scope_of(i)
                given = [a for a, v in enumerate(scope) if v in step.out]
                rest = [a for a, v in enumerate(scope) if v not in step.out]
                x = np.transpose(tensors[i], given + rest)
                if given:
                    x = x[tuple(decoded[scope[a]] for a in given)]  # (n, *rest)
                else:
                    x = x[None]
                weights = weights + _align(x, _aligner((BATCH,) + tuple(scope[a] for a in rest), (BATCH,) + step.elim))
            flat = choose(k, weights.reshape(n, -1))
            for v, value in zip(step.elim, np.unravel_index(flat, shape)):
                decoded[v] = value.astype(np.int64)
        return decoded
