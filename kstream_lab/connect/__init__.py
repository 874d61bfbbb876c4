"""Kafka Connect: the local distributed worker, its REST API, and the pipeline's JDBC sink connector."""

from kstream_lab.connect.jars import fetch_connect
from kstream_lab.connect.rest import ConnectClient
from kstream_lab.connect.worker import ConnectStatus, LocalConnect

__all__ = ["ConnectClient", "ConnectStatus", "LocalConnect", "fetch_connect"]
