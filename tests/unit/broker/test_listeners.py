"""The local broker's extra client listeners (KSTREAM_BROKER_EXTRA_LISTENERS): a proxy or NAT address
advertised to the clients of one listener while broker_port stays as it is."""

import pytest
from pydantic import ValidationError

from kstream_lab.broker.local import PLAINTEXT_LISTENERS, extra_listeners
from kstream_lab.settings import Settings


def test_each_extra_listener_listens_locally_and_advertises_its_address():
    block = PLAINTEXT_LISTENERS.format(port=9092, controller_port=9093)
    out = extra_listeners(block, {19094: "proxy.example:29094", 19093: "127.0.0.1:29093"})
    assert out.splitlines() == [
        "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
        ",EXTERNAL_19093://127.0.0.1:19093,EXTERNAL_19094://127.0.0.1:19094",
        "advertised.listeners=PLAINTEXT://127.0.0.1:9092"
        ",EXTERNAL_19093://127.0.0.1:29093,EXTERNAL_19094://proxy.example:29094",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        ",EXTERNAL_19093:PLAINTEXT,EXTERNAL_19094:PLAINTEXT",
    ]
    assert extra_listeners(block, {}) == block


def test_the_setting_comes_from_json_in_the_environment(monkeypatch):
    monkeypatch.setenv("KSTREAM_BROKER_EXTRA_LISTENERS", '{"19093": "nat.example:9093"}')
    assert Settings().broker_extra_listeners == {19093: "nat.example:9093"}


@pytest.mark.parametrize("address", ["nat.example", ":9093", "nat.example:", "nat.example:99999", "h:x"])
def test_an_address_without_host_and_port_is_refused_naming_the_variable(address):
    with pytest.raises(ValidationError, match=r"KSTREAM_BROKER_EXTRA_LISTENERS: 19093: .* must be a local port"):
        Settings(broker_extra_listeners={19093: address})
