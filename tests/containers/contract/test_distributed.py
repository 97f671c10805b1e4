"""This process's place among the hosts, from each launcher's variables, and joining them for real."""

import json
import os
import subprocess
import sys

import pytest

from jax_llm.contract import distributed, script_mode
from jax_llm.contract.distributed import LauncherError, join_cluster, plan_join, read_cluster_spec
from jax_llm.contract.paths import SageMakerPaths
from tests.support import CONTAINER_SRC, REPO, free_port


def test_hosts_keep_sagemakers_order_and_current_host_sets_the_process_id(tmp_path):
    path = tmp_path / "resourceconfig.json"
    hosts = ["algo-1", "algo-10", "algo-2"]  # sorted as strings, as SageMaker sorts them
    path.write_text(json.dumps({"current_host": "algo-2", "hosts": hosts, "network_interface_name": "eth1"}))
    spec = read_cluster_spec(path)
    assert spec.hosts == tuple(hosts) and spec.process_id == 2 and spec.process_count == 3
    assert spec.network_interface == "eth1"


def test_no_resource_config_is_one_host_and_joining_is_a_no_op(tmp_path):
    spec = read_cluster_spec(tmp_path / "missing.json")
    assert spec.process_count == 1 and spec.process_id == 0
    environ: dict = {}
    plan = join_cluster(environ, tmp_path / "missing.json")
    assert (plan.process_count, plan.process_id, plan.coordinator) == (1, 0, None)
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


def resource_config(tmp_path, current_host="algo-2", hosts=("algo-1", "algo-2"), interface="eth0"):
    path = tmp_path / "resourceconfig.json"
    path.write_text(
        json.dumps({"current_host": current_host, "hosts": list(hosts), "network_interface_name": interface})
    )
    return path


def test_resource_config_alone_sagemakers_own_launch(tmp_path):
    plan = plan_join({}, resource_config(tmp_path, "algo-10", ("algo-1", "algo-10", "algo-2")))
    assert (plan.process_count, plan.process_id) == (3, 1)
    assert plan.coordinator == f"algo-1:{distributed.COORDINATOR_PORT}" and plan.network_interface == "eth0"


def test_our_script_modes_jax_variables_come_first(tmp_path):
    environ = {
        "JAX_NUM_PROCESSES": "4",
        "JAX_PROCESS_ID": "3",
        "JAX_COORDINATOR_ADDRESS": "algo-1:7777",
        "SM_HOST_COUNT": "2",
        "SM_CURRENT_HOST_RANK": "1",
        "SM_MASTER_ADDR": "elsewhere",
    }
    plan = plan_join(environ, resource_config(tmp_path))
    assert (plan.process_count, plan.process_id, plan.coordinator) == (4, 3, "algo-1:7777")


def test_sdk_v3_driver_variables(tmp_path):
    # What sagemaker 3.27's sm_drivers/scripts/environment.py exports (values as it serializes them).
    environ = {
        "SM_HOST_COUNT": "2",
        "SM_CURRENT_HOST_RANK": "1",
        "SM_MASTER_ADDR": "algo-1",
        "SM_MASTER_PORT": "7777",
        "SM_NETWORK_INTERFACE_NAME": "ethwe",
    }
    plan = plan_join(environ, tmp_path / "no-resourceconfig.json")
    assert (plan.process_count, plan.process_id, plan.coordinator) == (2, 1, "algo-1:7777")
    assert plan.network_interface == "ethwe"
    # JAX_COORDINATOR_ADDRESS overrides every launcher's coordinator (two processes on one machine).
    plan = plan_join({**environ, "JAX_COORDINATOR_ADDRESS": "127.0.0.1:5000"}, tmp_path / "none.json")
    assert plan.coordinator == "127.0.0.1:5000"


@pytest.mark.parametrize(
    "environ, named",
    [
        ({"SM_HOST_COUNT": "two", "SM_CURRENT_HOST_RANK": "0", "SM_MASTER_ADDR": "a"}, "SM_HOST_COUNT"),
        ({"SM_HOST_COUNT": "2", "SM_CURRENT_HOST_RANK": "2", "SM_MASTER_ADDR": "a"}, "process id 2"),
        ({"SM_HOST_COUNT": "2", "SM_CURRENT_HOST_RANK": "0"}, "SM_MASTER_ADDR"),
        ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "JAX_COORDINATOR_ADDRESS"),
        ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": ""}, "JAX_PROCESS_ID"),
    ],
)
def test_contradicting_variables_are_named(tmp_path, environ, named):
    with pytest.raises(LauncherError, match=named):
        plan_join(environ, tmp_path / "none.json")


def test_nccl_interface_is_set_only_where_it_exists(tmp_path):
    interfaces = tmp_path / "net"
    (interfaces / "eth0").mkdir(parents=True)  # the shape of /sys/class/net: one entry per interface
    v3_local = plan_join({}, resource_config(tmp_path, interface="ethwe"))  # SDK v3 local mode's name
    assert distributed.nccl_environment(v3_local, {}, interfaces) == {}
    real = plan_join({}, resource_config(tmp_path, interface="eth0"))
    assert distributed.nccl_environment(real, {}, interfaces) == {"NCCL_SOCKET_IFNAME": "eth0"}
    assert distributed.nccl_environment(real, {"NCCL_SOCKET_IFNAME": "eth1"}, interfaces) == {}  # user's


def test_script_mode_never_hands_the_script_a_missing_interface(tmp_path):
    paths = SageMakerPaths(tmp_path)
    paths.input_config.mkdir(parents=True)
    resource_config(paths.input_config, interface="ethwe")  # no container here has ethwe
    assert "NCCL_SOCKET_IFNAME" not in script_mode.jax_environment(paths, {})
    resource_config(paths.input_config, interface="lo")  # every Linux machine has loopback
    assert script_mode.jax_environment(paths, {})["NCCL_SOCKET_IFNAME"] == "lo"


JOIN = """
from jax_llm.contract.distributed import join_cluster
plan = join_cluster()
import jax
print(plan.source, jax.process_count(), jax.process_index(), flush=True)
"""


def test_two_processes_join_from_sdk_v3_variables(tmp_path):
    """Two real processes on this machine join one cluster from the SM_ variables SDK v3's driver sets."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(CONTAINER_SRC)]),
        "SAGEMAKER_BASE_DIR": str(tmp_path),
        "JAX_PLATFORMS": "cpu",
        "SM_HOST_COUNT": "2",
        "SM_MASTER_ADDR": "127.0.0.1",
        "SM_MASTER_PORT": str(port),
        "SM_NETWORK_INTERFACE_NAME": "ethwe",
    }
    for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_COORDINATOR_ADDRESS"):
        env.pop(name, None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", JOIN],
            env={**env, "SM_CURRENT_HOST_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert [out.strip().splitlines()[-1] for out in outputs] == ["SM_ variables 2 0", "SM_ variables 2 1"]
    assert all("'ethwe' (from the launcher) does not exist here" in out for out in outputs)
