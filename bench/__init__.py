"""Benchmarks for the kubebots runtime: ``python -m bench`` (``make bench``) prints the figures.

One module per figure: :mod:`bench.manager_ops` (``get_or_create``), :mod:`bench.chat`
(``chat()`` latency), :mod:`bench.growth` (turn-200 / turn-1 ratio), :mod:`bench.rss` (memory
per cached bot, measured in a fresh subprocess) and :mod:`bench.single_flight` (builds under
concurrent ``get_or_create``). Nothing is written to disk besides temporary SQLite files.
"""
