"""genzoo: the catalogue around the zoo: registry, embedded datasets, run folders and the CLI."""

__version__ = "0.1.0"
