"""TF_CONFIG checked before TensorFlow sees it: every mistake is one line naming TF_CONFIG and what is wrong."""
import json
import socket

import pytest

from expr3d.cli import UsageError
from expr3d.training import cluster


def test_workers_and_a_chief_get_their_ranks_in_tensorflows_order():
    role = cluster.read_tf_config(cluster.tf_config(["127.0.0.1:5000", "127.0.0.1:5001"], 1))
    assert (role.task_type, role.index, role.rank, role.num_workers) == ("worker", 1, 1, 2)
    assert role.address == "127.0.0.1:5001" and not role.is_chief
    text = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]}, "task": {"type": "worker", "index": 0}})
    role = cluster.read_tf_config(text)
    assert role.rank == 1 and role.addresses == ("a:1", "b:2", "c:3") and role.address == "b:2"
    chief = cluster.read_tf_config(text.replace('"type": "worker"', '"type": "chief"'))
    assert chief.is_chief and chief.address == "a:1"


@pytest.mark.parametrize("text,expected", [
    ("", "needs the TF_CONFIG environment variable"),
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG needs "cluster" and "task" objects'),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG names a:1 more than once"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     'TF_CONFIG task index 2 is not one of the 2 "worker" addresses'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "TF_CONFIG task type 'ps'"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG cluster job(s) ps"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}', 'must be a list of "host:port"'),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "TF_CONFIG cluster lists no worker"),
])
def test_mistakes_are_named_in_one_line(text, expected):
    with pytest.raises(UsageError) as caught:
        cluster.read_tf_config(text)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_missing_tf_config_says_how_to_launch(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UsageError, match="python -m expr3d.launch --workers=N"):
        cluster.read_tf_config()


def test_unreachable_names_the_workers_whose_port_refuses_connections():
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_address = f"127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    up = f"127.0.0.1:{listening.getsockname()[1]}"
    role = cluster.read_tf_config(cluster.tf_config(["127.0.0.1:1", up, closed_address], 0))
    try:
        assert cluster.unreachable(role) == [closed_address]
    finally:
        listening.close()
