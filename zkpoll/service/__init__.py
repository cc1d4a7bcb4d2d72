"""What every partitioned service shares, beside the ownership core.

The polling agent (:mod:`zkpoll.polling`), the alarm evaluator
(:mod:`zkpoll.alarm`) and library users (:mod:`zkpoll.work`) are siblings
on top of this:

* :mod:`~zkpoll.service.cycles`: wall-clock aligned cycle arithmetic and the
  wait for a cycle's start;
* :mod:`~zkpoll.service.options`: ``[DEFAULT] host``, the ``[coordination]``
  options of a group member, their timing check, building a Partition;
* :mod:`~zkpoll.service.instance_lock`: one standalone agent per configuration.
"""
