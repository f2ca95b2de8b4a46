"""Driver for the multi-node test, run as its own process (one ``ray.init`` per process).

Starts a Ray cluster of three simulated nodes on this machine with
``ray.cluster_utils.Cluster``, runs a backfill against it and writes which node each
partition attempt ran on to a JSON file.

Usage: python -m tests.integration.multinode_driver CONFIG.toml BACKFILL_ID OUT.json
"""

from __future__ import annotations

import json
import sys


def main(config_path: str, backfill_id: str, out_path: str) -> int:
    import ray
    from ray.cluster_utils import Cluster

    from backfill import run_backfill
    from backfill.config import load_config

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(2):
        cluster.add_node(num_cpus=4)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    try:
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        cfg = load_config(config_path, run__ray_address=cluster.address).validated()
        result = run_backfill(cfg, [backfill_id], progress=print)
        with open(out_path, "w") as f:
            json.dump({"nodes": nodes, "succeeded": result.succeeded,
                       "attempts": [{"partition": o.partition, "status": o.status, "node": o.node,
                                     "actor": o.actor} for o in result.outcomes]}, f)
        return 0 if result.succeeded else 1
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:4]))
