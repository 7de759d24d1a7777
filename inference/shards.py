"""Data larger than memory: a folder of ``.npy`` shards, or memory-mapped arrays, read a block at a time.

A :class:`ShardedDataset` holds no data: it knows where the rows are (files on disk, or arrays the
caller memory-mapped) and reads one *block* of consecutive rows when a minibatch needs it. Every
block is copied out of a memory map that is closed at once, so the pages read leave the process
(file-backed pages of an open map would count in its resident memory until the kernel needs them).
Resident memory is thus bounded by two blocks and one minibatch, whatever the number of rows.

Layout on disk (written by :func:`write_shards`)::

    folder/x-00000.npy  x-00001.npy  ...     one key's rows, split along the leading axis
    folder/y-00000.npy  y-00001.npy  ...     another key: same number of rows shard by shard

How an epoch is shuffled (a two-level permutation, a pure function of ``seed`` and the epoch
number :math:`e`, so a resumed run needs no saved permutation):

1. the blocks' order :math:`\\pi_e`, a uniform permutation of the :math:`B` blocks drawn by
   ``numpy.random.default_rng([seed, e])``;
2. inside block :math:`b`, the rows' order :math:`\\sigma_{e,b}`, a uniform permutation drawn by
   ``numpy.random.default_rng([seed, e, b])``;
3. the epoch's order is :math:`\\sigma_{e,\\pi_e(1)} \\Vert \\dots \\Vert \\sigma_{e,\\pi_e(B)}`,
   and minibatch :math:`k` holds positions :math:`[kM, (k+1)M)` of it (:math:`M` the batch size;
   a minibatch may straddle two blocks, only the last of an epoch is shorter).

Every row is visited exactly once per epoch. The order is not uniform over all :math:`N!`
permutations (rows of one block stay together within an epoch), the price of reading blocks
sequentially: the shuffle of WebDataset and of tf.data's per-file interleave. Smaller blocks mix
more; a block of one row is the uniform shuffle.

References:
    Hoffman, Blei, Wang, Paisley (2013). Stochastic variational inference. JMLR 14. (Minibatches
    of data that never sit in memory at once.)
    Aizman, Maltby, Breuel (2019). High performance I/O for large scale deep learning (WebDataset:
    shards read sequentially, shuffled by shard order and within a buffer).

Example:
    >>> import numpy as np, tempfile
    >>> from inference.shards import write_shards
    >>> folder = tempfile.mkdtemp()
    >>> data = write_shards(folder, {"x": np.arange(10.0).reshape(10, 1)}, rows_per_shard=4)
    >>> data.n, data.num_blocks
    (10, 3)
    >>> rows, batch = data.batch(seed=0, epoch=0, position=0, batch_size=5)
    >>> bool((batch["x"][:, 0] == rows).all())
    True
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import re
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from inference.errors import DataError
from inference.io import atomic_write
from inference.rng import check_seed

__all__ = ["ShardedDataset", "write_shards", "is_sharded"]

_SHARD = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)-(?P<index>\d{5})\.npy$")
DEFAULT_BLOCK_BYTES = 64 * 2**20  # a single memory-mapped file is read 64 MiB at a time


@dataclasses.dataclass(frozen=True)
class _Segment:
    """A run of rows of one key: a ``.npy`` file (opened memory-mapped per read) or an array."""

    source: Any  # pathlib.Path or a NumPy array (a np.memmap included)
    rows: int
    dtype: np.dtype
    tail: tuple  # the shape after the leading axis

    def read(self, lo: int, hi: int) -> np.ndarray:
        if isinstance(self.source, pathlib.Path):
            mapped = np.load(self.source, mmap_mode="r", allow_pickle=False)
            try:
                return np.array(mapped[lo:hi])  # a copy; the map is closed when `mapped` goes
            finally:
                del mapped
        return np.array(self.source[lo:hi])


def _segment(source, name: str) -> _Segment:
    if isinstance(source, (str, pathlib.Path)):
        path = pathlib.Path(source)
        try:
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(f"{name}: cannot read {path} as a .npy array ({err})") from None
        if not isinstance(mapped, np.ndarray):
            raise DataError(f"{name}: {path} is an .npz archive, not one .npy array")
        shape, dtype = mapped.shape, mapped.dtype
        del mapped
        source = path
    elif isinstance(source, np.ndarray):
        shape, dtype = source.shape, source.dtype
    else:
        raise DataError(f"{name}: expected a .npy path or a NumPy array (np.memmap included), got "
                        f"{type(source).__name__}")
    if len(shape) == 0:
        raise DataError(f"{name}: a scalar has no leading data axis")
    if dtype == object:
        raise DataError(f"{name}: object arrays cannot be read without pickle")
    return _Segment(source, int(shape[0]), np.dtype(dtype), tuple(shape[1:]))


def is_sharded(data) -> bool:
    """Whether ``data`` is a :class:`ShardedDataset` (for loops that take arrays or shards)."""
    return isinstance(data, ShardedDataset)


class ShardedDataset:
    """Rows of one or several keys on disk, streamed as minibatches with bounded memory.

    Args:
        source: one of
            - a folder of shards ``<key>-<00000>.npy`` (:func:`write_shards` writes one);
            - one ``.npy`` file (the key ``"x"``), read memory-mapped;
            - a NumPy array or ``np.memmap`` (the key ``"x"``);
            - a dict ``key -> .npy path or array``, every value with the same number of rows.
        block_rows: rows per block (what is read at once). Default: each shard is one block; a
            single file or array is cut into blocks of about 64 MiB.

    Attributes:
        n: the number of rows. keys: the data's keys. shapes / dtypes: per key, one row's shape and
        the dtype. num_blocks: how many blocks an epoch reads.
    """

    def __init__(self, source, *, block_rows: int | None = None):
        segments = self._open(source)
        keys = list(segments)
        first = segments[keys[0]]
        for key in keys[1:]:
            rows_a, rows_b = [s.rows for s in first], [s.rows for s in segments[key]]
            if rows_a != rows_b:
                raise DataError(f"keys {keys[0]!r} and {key!r} must have the same rows shard by shard, got "
                                f"{rows_a} and {rows_b}")
        for key, segs in segments.items():
            for i, s in enumerate(segs[1:], 1):
                if (s.dtype, s.tail) != (segs[0].dtype, segs[0].tail):
                    raise DataError(f"key {key!r}: shard {i} has dtype {s.dtype} and rows of shape {s.tail}, "
                                    f"shard 0 {segs[0].dtype} and {segs[0].tail}")
        self.segments = segments
        self.keys = tuple(keys)
        self.shapes = {k: segs[0].tail for k, segs in segments.items()}
        self.dtypes = {k: segs[0].dtype for k, segs in segments.items()}
        self.n = sum(s.rows for s in first)
        if self.n == 0:
            raise DataError("the sharded data has no rows")
        if block_rows is None and len(first) == 1:
            row_bytes = sum(max(1, math.prod(self.shapes[k])) * self.dtypes[k].itemsize for k in keys)
            block_rows = max(1, DEFAULT_BLOCK_BYTES // row_bytes)
        if block_rows is not None and (isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer))
                                       or block_rows < 1):
            raise DataError(f"block_rows must be a positive integer or None, got {block_rows!r}")
        # blocks: (segment index, first row, end row, first global row)
        self.blocks: list[tuple[int, int, int, int]] = []
        start = 0
        for si, seg in enumerate(first):
            step = seg.rows if block_rows is None else int(block_rows)
            for lo in range(0, seg.rows, max(step, 1)):
                hi = min(seg.rows, lo + step)
                self.blocks.append((si, lo, hi, start + lo))
            start += seg.rows
        self._cache: dict[int, dict[str, np.ndarray]] = {}
        self._order_cache: tuple | None = None

    # ------------------------------------------------------------------ opening
    @staticmethod
    def _open(source) -> dict[str, list[_Segment]]:
        if isinstance(source, np.ndarray):
            return {"x": [_segment(source, "data")]}
        if isinstance(source, Mapping):
            if not source:
                raise DataError("data must be a non-empty dict of .npy paths or arrays")
            out = {str(k): [_segment(v, f"data[{k!r}]")] for k, v in source.items()}
            lengths = {k: segs[0].rows for k, segs in out.items()}
            if len(set(lengths.values())) != 1:
                raise DataError(f"data arrays must share their leading data axis, got lengths {lengths}")
            return out
        if not isinstance(source, (str, pathlib.Path)):
            raise DataError(f"data must be a folder of .npy shards, a .npy file, an array or a dict of them, "
                            f"got {type(source).__name__}")
        path = pathlib.Path(source)
        if path.is_file():
            return {"x": [_segment(path, "data")]}
        if not path.is_dir():
            raise DataError(f"{path}: no such folder or .npy file")
        found: dict[str, dict[int, pathlib.Path]] = {}
        for file in sorted(path.iterdir()):
            match = _SHARD.match(file.name)
            if match:
                found.setdefault(match["key"], {})[int(match["index"])] = file
        if not found:
            raise DataError(f"{path}: no shards named <key>-<00000>.npy in the folder")
        out = {}
        for key, files in found.items():
            missing = sorted(set(range(max(files) + 1)) - set(files))
            if missing:
                raise DataError(f"{path}: key {key!r} lacks shard {key}-{missing[0]:05d}.npy "
                                f"(shards are numbered from 00000 without gaps)")
            out[key] = [_segment(files[i], f"{key}-{i:05d}.npy") for i in range(len(files))]
        return out

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {self.dtypes[k]}{list(self.shapes[k])}" for k in self.keys)
        return f"ShardedDataset(n={self.n}, blocks={self.num_blocks}, {shapes})"

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    # ------------------------------------------------------------------ reading
    def read_block(self, b: int) -> dict[str, np.ndarray]:
        """Block ``b``'s rows in storage order, one array per key (read from disk now)."""
        si, lo, hi, _ = self.blocks[b]
        return {k: segs[si].read(lo, hi) for k, segs in self.segments.items()}

    def iter_blocks(self, seed: int | None = None, epoch: int = 0) -> Iterator[tuple[np.ndarray, dict]]:
        """Every block once, as ``(global row indices, arrays)``: in storage order when ``seed`` is
        None, else in the epoch's order (steps 1-2 of the module docstring). For chunked
        algorithms (online VB reads documents a chunk at a time)."""
        order = range(self.num_blocks) if seed is None else self._block_order(check_seed(seed), epoch)
        for b in order:
            arrays = self.read_block(int(b))
            rows = np.arange(self.blocks[b][3], self.blocks[b][3] + self.blocks[b][2] - self.blocks[b][1])
            if seed is not None:
                inner = self._inner(seed, epoch, int(b))
                arrays, rows = {k: v[inner] for k, v in arrays.items()}, rows[inner]
            yield rows, arrays

    def _block_order(self, seed: int, epoch: int) -> np.ndarray:
        return np.random.default_rng([seed, int(epoch)]).permutation(self.num_blocks)

    def _inner(self, seed: int, epoch: int, b: int) -> np.ndarray:
        size = self.blocks[b][2] - self.blocks[b][1]
        return np.random.default_rng([seed, int(epoch), b]).permutation(size)

    def batches_per_epoch(self, batch_size: int) -> int:
        return math.ceil(self.n / batch_size)

    def batch(self, seed: int, epoch: int, position: int, batch_size: int) -> tuple[np.ndarray, dict]:
        """Minibatch ``position`` (0-based) of epoch ``epoch``: ``(global row indices, key -> array)``.

        A pure function of its arguments (step 3 of the module docstring); consecutive calls reuse
        the blocks already read, so an epoch reads each block once.
        """
        seed = check_seed(seed)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not 0 <= position < self.batches_per_epoch(batch_size):
            raise DataError(f"position must be in 0..{self.batches_per_epoch(batch_size) - 1} for batch_size "
                            f"{batch_size} and {self.n} rows, got {position}")
        if self._order_cache is None or self._order_cache[:2] != (seed, epoch):
            order = self._block_order(seed, epoch)
            sizes = np.array([self.blocks[b][2] - self.blocks[b][1] for b in order])
            self._order_cache = (seed, epoch, order, np.concatenate([[0], np.cumsum(sizes)]))
            self._cache = {}
        _, _, order, bounds = self._order_cache
        start, stop = position * batch_size, min(self.n, (position + 1) * batch_size)
        first = int(np.searchsorted(bounds, start, side="right")) - 1
        last = int(np.searchsorted(bounds, stop, side="left")) - 1
        rows, parts = [], []
        for j in range(first, last + 1):
            if j not in self._cache:  # keep at most the block before and this one
                self._cache = {i: v for i, v in self._cache.items() if i >= j - 1}
                b = int(order[j])
                inner = self._inner(seed, epoch, b)
                arrays = self.read_block(b)
                arrays = {k: v[inner] for k, v in arrays.items()}
                arrays["__rows__"] = self.blocks[b][3] + inner
                self._cache[j] = arrays
            lo, hi = max(start, bounds[j]) - bounds[j], min(stop, bounds[j + 1]) - bounds[j]
            parts.append({k: v[lo:hi] for k, v in self._cache[j].items()})
        out = {k: (parts[0][k] if len(parts) == 1 else np.concatenate([p[k] for p in parts])) for k in parts[0]}
        return out.pop("__rows__"), out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every row in memory (storage order): for small data and tests only."""
        parts = [self.read_block(b) for b in range(self.num_blocks)]
        return {k: np.concatenate([p[k] for p in parts]) for k in self.keys}


def write_shards(folder, data, rows_per_shard: int | None = None) -> ShardedDataset:
    """Write ``data`` as a folder of ``.npy`` shards (each file atomically) and open it.

    Args:
        folder: the folder (created; existing shards of the same keys are refused, not mixed).
        data: a dict of arrays sharing a leading axis, cut every ``rows_per_shard`` rows; or an
            iterable of such dicts, one shard each (to write data that never sits in memory whole).
        rows_per_shard: rows per shard when ``data`` is one dict of arrays.

    Returns:
        The :class:`ShardedDataset` reading the folder.
    """
    folder = pathlib.Path(folder)
    if isinstance(data, (np.ndarray, Mapping)):
        arrays = {"x": data} if isinstance(data, np.ndarray) else dict(data)
        if rows_per_shard is None or isinstance(rows_per_shard, bool) or int(rows_per_shard) < 1:
            raise DataError(f"rows_per_shard must be a positive integer for a dict of arrays, got {rows_per_shard!r}")
        n = {k: np.shape(v)[0] if np.ndim(v) else None for k, v in arrays.items()}
        if None in n.values() or len(set(n.values())) != 1:
            raise DataError(f"data arrays must share their leading data axis, got lengths {n}")
        total = next(iter(n.values()))
        chunks: Iterable = ({k: v[lo:lo + rows_per_shard] for k, v in arrays.items()}
                            for lo in range(0, total, int(rows_per_shard)))
    else:
        chunks = data
    folder.mkdir(parents=True, exist_ok=True)
    keys, count = None, 0
    for i, chunk in enumerate(chunks):
        if not isinstance(chunk, Mapping) or not chunk:
            raise DataError(f"shard {i}: expected a non-empty dict of arrays, got {type(chunk).__name__}")
        if keys is None:
            keys = sorted(chunk)
            bad = [k for k in keys if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k))]
            if bad:
                raise DataError(f"key {bad[0]!r} is not usable in a shard's file name (letters, digits, _)")
            clash = [p.name for p in folder.iterdir() if _SHARD.match(p.name) and _SHARD.match(p.name)["key"] in keys]
            if clash:
                raise DataError(f"{folder}: holds shards already ({clash[0]}); write to an empty folder")
        elif sorted(chunk) != keys:
            raise DataError(f"shard {i}: keys {sorted(chunk)}, shard 0 had {keys}")
        for k in keys:
            array = np.asarray(chunk[k])
            atomic_write(folder / f"{k}-{i:05d}.npy", lambda f, a=array: np.save(f, a, allow_pickle=False))
        count += 1
    if count == 0:
        raise DataError("no data to write (an empty iterable of shards)")
    return ShardedDataset(folder)
