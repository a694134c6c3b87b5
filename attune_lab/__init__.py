"""Attune's lab: the benchmarks, evaluations and training that measure and build the runtime (``attune``).

Nothing in ``attune/`` imports this package (``tests/test_import_graph.py``): the agent installs and runs without
it. Its commands (``bench-*``, ``eval-*``, ``train-emotion``, ``build-references``, ``emotion-axis``) join the
command line when it is importable; docs/LAB.md lists them.
"""
