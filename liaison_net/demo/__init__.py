"""`liaison demo`: a real four-node network on this machine, and a short story told through it.

* ``network``: the PKI (our admin code), node configs on free loopback ports, one real
  ``liaison node serve`` process per node, officer keystores and their enrolment. Every
  process is recorded by PID and stopped by the caller's ``finally``.
* ``scenario``: the story, told with the officer client library (``NodeSession``, sealing,
  policy, content) exactly as the CLI does it, recording what happened and checking it.
  The alerts are told there; the early-warning signals in ``signal_steps``; the cast and
  the records both share in ``story_types``; ``forced`` posts what a modified client would.
* ``report``: the records, the rich progress lines and tables, and the JSON summary.

Every wait is bounded by one ``Deadline`` (the ``--timeout`` of the command).
"""
