"""JSON-lines benchmarks against the peer; run each from the repository root as
``python -m benchmarks.NAME`` (``benchmarks`` is not installed with zkpoll).

Underscored modules are not benchmarks: :mod:`benchmarks._bench_util` is what
every script shares (JSON lines, progress, child processes, the bench error),
the others are the plumbing, peers and analysis of one benchmark each.
"""
