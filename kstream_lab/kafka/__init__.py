"""The only package that builds confluent_kafka clients (import-linter enforces it).

Workers, replay and apps get producers, consumers and admin clients from here, configured from
:class:`kstream_lab.settings.Settings`, so pointing ``KSTREAM_BOOTSTRAP_SERVERS`` at another cluster
changes every client at once.
"""

from kstream_lab.kafka.clients import client_config, make_admin, make_consumer, make_producer

__all__ = ["client_config", "make_admin", "make_consumer", "make_producer"]
