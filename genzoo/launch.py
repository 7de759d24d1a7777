"""The ``genzoo`` command's entry point: fixes Python's string hashing, then runs :mod:`genzoo.cli`.

NumPyro's ``Trace_ELBO`` sums the ELBO's sites in the order of a Python set, which follows the
hashes of their names; Python salts those hashes afresh in every process unless ``PYTHONHASHSEED``
is set. The compiled SVI program then differs from run to run: JAX's persistent cache never finds it
again (about 3 s of a second ``genzoo compare hmm``), and its last bits change between two runs
of the same seed. The command therefore runs with ``PYTHONHASHSEED=0`` unless the caller set
one: where it is unset, the interpreter is started again with it, before anything heavy is imported.
Importing genzoo as a library changes nothing.
"""

import os
import sys


def main() -> int:
    if "PYTHONHASHSEED" not in os.environ:
        env = dict(os.environ, PYTHONHASHSEED="0")
        try:
            os.execve(sys.executable, [sys.executable, "-m", "genzoo", *sys.argv[1:]], env)
        except OSError:  # no interpreter to start again: run as is, with per-process hashes
            pass
    from genzoo.cli import main as cli_main

    return cli_main()
