"""`liaison chaos`: the soak that checks "nothing accepted is lost" under real faults.

Four real nodes, officers sending on each, while nodes are SIGKILLed and restarted and
links are cut and healed; then every envelope is accounted for from the SQLite files.

* ``plan``: the seeded schedule of faults (pure: same seed, same faults).
* ``proxy``: the TCP proxy in front of every federation listener (cut and heal a pair).
* ``traffic``: what officers send (tags, precedences, built-in refusals) and how.
* ``soak``: runs the network, the traffic and the faults, then drains.
* ``check``: the accounting from the nodes' databases and audit chains.
* ``effects``: what each envelope owes beyond delivery (evidence, notices, due times,
  receipts), counted where it belongs: missing, twice or unowed.
* ``report``: the table, the JSON, the live progress line.
"""
