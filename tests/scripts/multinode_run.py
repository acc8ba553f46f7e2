"""Train configs/smoke.yaml on a multi-node Ray cluster on this machine and lose a worker node.

Run by tests/test_multinode.py in a process of its own. This process owns the cluster
(``ray.cluster_utils.Cluster``: a head that offers no CPU, so actors go to the workers, and
two one-CPU worker nodes) and watches it; ``engram train --address`` runs as a child process.
Prints one JSON line: where the actors ran before the loss, and the run's final progress.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster
from ray.util.state import list_actors

from engram.checkpoint import Checkpointer

TOTAL_STEPS = 100_000


def alive_actors() -> list:
    # the address is given: the state API would otherwise pick the newest cluster on the machine
    return list_actors(address=ray.get_runtime_context().gcs_address,
                       filters=[("class_name", "=", "RolloutWorker"), ("state", "=", "ALIVE")])


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def main(run_dir: str) -> None:
    seen: dict = {}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    command = [
        str(Path(sys.executable).parent / "engram"), "train", "configs/smoke.yaml", "--run-dir", run_dir,
        "--address", cluster.address, "--set", f"run.total_steps={TOTAL_STEPS}", "--set", "telemetry.console=false",
        "--set", "checkpoint.interval_s=1", "--set", "resources.num_actors=2", "--set", "resources.cpus_per_actor=1",
    ]
    training = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(Path(run_dir).with_suffix(".log"), "w"))
    try:
        metrics = Path(run_dir) / "metrics.jsonl"
        wait_for(lambda: len(alive_actors()) == 2 and metrics.exists() and metrics.read_text().count("\n") >= 3,
                 180, "two actors and the first records")
        seen["nodes_before"] = sorted({a.node_id for a in alive_actors()})
        seen["worker_nodes"] = sorted(node.node_id for node in workers)
        seen["steps_at_loss"] = json.loads(metrics.read_text().splitlines()[-1])["step"]
        cluster.remove_node(workers[0])  # its actor dies with it; one CPU is left for two one-CPU actors
        seen["lost_node"] = workers[0].node_id
        time.sleep(5)
        seen["placed_while_short"] = len(alive_actors())  # the replacement waits for room
        seen["exit_status"] = training.wait(timeout=400)
    finally:
        if training.poll() is None:
            training.terminate()
            training.wait(timeout=60)
    payload, _ = Checkpointer(Path(run_dir) / "checkpoints").load_latest()
    seen["progress"] = {k: payload["progress"][k] for k in ("env_steps", "actor_restarts", "nodes_lost")}
    print("RESULT " + json.dumps(seen), flush=True)
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
