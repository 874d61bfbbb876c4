"""The embedded default broker: a real Apache Kafka (KRaft, single node) from Maven artifacts."""

from kstream_lab.broker.local import BrokerStatus, LocalBroker

__all__ = ["BrokerStatus", "LocalBroker"]
