import base64
import uuid

from kstream_lab.broker import local


def test_cluster_ids_never_start_with_a_dash(monkeypatch):
    dash = uuid.UUID(bytes=base64.urlsafe_b64decode("-" + "A" * 21 + "=="))
    draws = iter([dash, uuid.UUID(int=1)])
    monkeypatch.setattr(local.uuid, "uuid4", lambda: next(draws))
    cid = local.new_cluster_id()
    assert cid == "AAAAAAAAAAAAAAAAAAAAAQ" and len(cid) == 22
    monkeypatch.undo()
    assert all(not local.new_cluster_id().startswith("-") for _ in range(2000))
