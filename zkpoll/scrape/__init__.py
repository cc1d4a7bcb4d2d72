"""The pure core of the Prometheus scraper: no I/O, no threads, no network.

Each module is public and pins its own ``__all__``:

* :mod:`zkpoll.scrape.exposition`: parse a scrape body (text format 0.0.4
  or OpenMetrics 1.0) into series and metric families.
* :mod:`zkpoll.scrape.relabel`: ``relabel_configs`` and
  ``metric_relabel_configs`` rules, parsed, validated and applied.
* :mod:`zkpoll.scrape.targets`: file_sd target groups and job settings to
  scrape targets (URL, labels, a partitioning id); ``honor_labels``.

``_lines`` is the exposition parser's exact slow path.  Dependencies run
one way: ``targets`` uses ``relabel``; ``exposition`` uses ``_lines``.
"""
