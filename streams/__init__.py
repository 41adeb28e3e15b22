"""The Kafka side of spendwatch: a thin faust-streaming adapter around ``detector``.

``build_app(settings)`` (in :mod:`streams.app`) wires the topics, the state
table and the agents; ``streams.cli`` holds the ``worker`` and ``produce``
commands. Nothing here decides what is an anomaly: events go into
:class:`detector.engine.Engine` exactly as ``spendwatch replay`` feeds it.
"""
