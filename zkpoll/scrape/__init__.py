"""The pure core of the Prometheus scraper: no I/O, no threads, no network.

* :mod:`zkpoll.scrape.exposition`: parse a scrape body (text format 0.0.4
  and OpenMetrics 1.0) into series and metric families.
"""
