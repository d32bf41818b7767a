"""A local Ray cluster for the `--ray` tests, every node bound to 127.0.0.1, in its own process:

    python -m tests.ray_cluster [--nodes 2] [--cpus 1] [--lifetime 600]

Prints the head's address on one line once every node is up, then holds the cluster until its
stdin closes (or `--lifetime` seconds pass) and shuts it down. Two nodes on one machine come
from Ray's own `ray.cluster_utils.Cluster` (`ray start --address` cannot join a head bound to
127.0.0.1 on this Ray: it rewrites the address to the machine's network address).
"""

from __future__ import annotations

import argparse
import os
import select
import sys

LOCAL_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep 127.0.0.1 as it is (ray_launch.py)
    "RAY_USAGE_STATS_ENABLED": "0",  # Ray reports nothing anywhere
}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m tests.ray_cluster")
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--cpus", type=int, default=1, help="CPUs each node offers")
    p.add_argument("--lifetime", type=float, default=600.0, help="shut down after S at most")
    args = p.parse_args()
    os.environ.update(LOCAL_ENV)
    from ray.cluster_utils import Cluster

    common = {"num_cpus": args.cpus, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args={**common, "include_dashboard": False})
    try:
        for _ in range(args.nodes - 1):
            cluster.add_node(**common)
        cluster.wait_for_nodes()
        print(cluster.address, flush=True)
        select.select([sys.stdin], [], [], args.lifetime)  # until stdin closes, or the lifetime
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
