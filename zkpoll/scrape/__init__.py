"""The Prometheus scraper: a pure core, and the I/O around it.

The pure core (no I/O, no threads, no network); each module pins its own
``__all__``:

* :mod:`zkpoll.scrape.exposition`: parse a scrape body (text format 0.0.4
  or OpenMetrics 1.0) into series and metric families.
* :mod:`zkpoll.scrape.relabel`: ``relabel_configs`` and
  ``metric_relabel_configs`` rules, parsed, validated and applied.
* :mod:`zkpoll.scrape.targets`: file_sd target groups and job settings to
  scrape targets (URL, labels, a partitioning id); ``honor_labels``.

* :mod:`zkpoll.scrape.config`: a source's ``scrape:`` section, checked.
* :mod:`zkpoll.scrape.staleness`: which series end, per member.

``_lines`` is the exposition parser's exact slow path.  Dependencies run
one way: ``targets`` uses ``relabel``; ``exposition`` uses ``_lines``.

The I/O: :mod:`zkpoll.scrape.fetch` (one HTTP scrape),
:mod:`zkpoll.scrape.discovery` (``prometheus_sd``: static, file and HTTP
service discovery) and :mod:`zkpoll.scrape.pollster` (``prometheus.scrape``).
"""
