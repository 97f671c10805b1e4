"""Reading SageMaker's resourceconfig.json into this process's place among the hosts."""

import json

from jax_llm.contract.distributed import ClusterSpec, initialize, read_cluster_spec


def test_hosts_keep_sagemakers_order_and_current_host_sets_the_process_id(tmp_path):
    path = tmp_path / "resourceconfig.json"
    hosts = ["algo-1", "algo-10", "algo-2"]  # sorted as strings, as SageMaker sorts them
    path.write_text(json.dumps({"current_host": "algo-2", "hosts": hosts, "network_interface_name": "eth1"}))
    spec = read_cluster_spec(path)
    assert spec.hosts == tuple(hosts) and spec.process_id == 2 and spec.process_count == 3
    assert spec.network_interface == "eth1"


def test_no_resource_config_is_one_host_and_initialize_is_a_no_op(tmp_path):
    spec = read_cluster_spec(tmp_path / "missing.json")
    assert spec.process_count == 1 and spec.process_id == 0
    environ: dict = {}
    initialize(ClusterSpec(("algo-1",), "algo-1", "eth0"), environ)
    assert environ == {}  # one host: no NCCL interface, no coordinator


def test_current_host_must_be_listed(tmp_path):
    path = tmp_path / "resourceconfig.json"
    path.write_text(json.dumps({"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]}))
    try:
        read_cluster_spec(path)
    except ValueError as error:
        assert "algo-3" in str(error)
    else:
        raise AssertionError("accepted a current_host outside hosts")
