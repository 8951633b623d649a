"""`liaison bench`: our broker measured next to Mosquitto and RabbitMQ, on this machine.

* ``network``: real node processes for the bench, on top of the demo's process manager.
* ``workload``: officers, envelopes sealed and signed in advance, the submitting clients.
* ``sinks``: one small process per run that records when each envelope or message arrives
  at the destination (our node's SQLite inbox, or a subscriber of the baseline broker).
* ``scenarios``: relay, paced, outage and crash, written once against the ``System``
  interface so that every broker is driven and counted the same way; memory for our node.
* ``baselines``: two Mosquitto brokers bridged at QoS 1, two RabbitMQ nodes and a shovel.
* ``ceiling``: this machine's crypto and disk rates, the limits the node works under.
* ``report``: the figures, the table on screen and the JSON file.

Everything runs on 127.0.0.1, each scenario bounded in count and in time.
"""
