"""Train configs/smoke.yaml on a multi-node Ray cluster on this machine and lose a node.

Run by tests/test_multinode.py in a process of its own. This process owns the cluster
(``ray.cluster_utils.Cluster``: a head that offers no CPU, so actors go to the workers, and
one-CPU worker nodes) and watches it; ``engram train --address`` runs as a child process.
Prints one JSON line of what it saw.

``multinode_run.py actor RUN_DIR``: two actors on two nodes; one node is lost, its actor waits
for room, a node that joins later takes it, the run goes on, and Ctrl-C (SIGINT) stops it
cleanly. The budget is out of reach on purpose: a run that ended at a budget could end before
the node joins, since how soon it ends depends on the machine's speed.
``multinode_run.py learner RUN_DIR``: the learner in a Ray actor on a node of its own; that
node is lost, the run stops with exit code 4, and ``--resume`` on a new node continues it.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster
from ray.util.state import list_actors

from engram.checkpoint import Checkpointer

STEPS_AFTER_JOIN = 20_000  # what the actor scenario trains after the joined node took the actor


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


def latest_step(metrics: Path) -> int:
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    return json.loads(lines[-1])["step"] if lines else 0


def train_command(run_dir: str, address: str, *extra: str, total_steps: int) -> list[str]:
    return [
        str(Path(sys.executable).parent / "engram"), "train", "configs/smoke.yaml", "--run-dir", run_dir,
        "--address", address, "--set", f"run.total_steps={total_steps}", "--set", "telemetry.console=false",
        "--set", "checkpoint.interval_s=1", "--set", "resources.cpus_per_actor=1", *extra,
    ]


def lose_an_actor_node(run_dir: str) -> dict:
    seen: dict = {}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    command = train_command(run_dir, cluster.address, "--set", "resources.num_actors=2", total_steps=10**12)
    training = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(Path(run_dir).with_suffix(".log"), "w"))
    try:
        metrics = Path(run_dir) / "metrics.jsonl"
        wait_for(lambda: len(alive_actors()) == 2 and metrics.exists() and metrics.read_text().count("\n") >= 3,
                 180, "two actors and the first records")
        seen["nodes_before"] = sorted({a.node_id for a in alive_actors()})
        seen["worker_nodes"] = sorted(node.node_id for node in workers)
        seen["steps_at_loss"] = latest_step(metrics)
        cluster.remove_node(workers[0])  # its actor dies with it; one CPU is left for two one-CPU actors
        seen["lost_node"] = workers[0].node_id
        time.sleep(5)
        seen["placed_while_short"] = len(alive_actors())  # the replacement waits for room
        joined = cluster.add_node(num_cpus=1)
        wait_for(lambda: joined.node_id in {a.node_id for a in alive_actors()}, 120, "an actor on the node that joined")
        seen["joined_node_has_an_actor"] = True
        seen["steps_at_join"] = latest_step(metrics)
        wait_for(lambda: latest_step(metrics) >= seen["steps_at_join"] + STEPS_AFTER_JOIN, 300, "training after the join")
        training.send_signal(signal.SIGINT)  # what a user's Ctrl-C does: stop, checkpoint, exit 0
        seen["exit_status"] = training.wait(timeout=120)
    finally:
        if training.poll() is None:
            training.terminate()
            training.wait(timeout=60)
    payload, _ = Checkpointer(Path(run_dir) / "checkpoints").load_latest()
    seen["progress"] = {k: payload["progress"][k] for k in ("env_steps", "actor_restarts", "nodes_lost")}
    ray.shutdown()
    cluster.shutdown()
    return seen


def learner_actors() -> list:
    return list_actors(address=ray.get_runtime_context().gcs_address,
                       filters=[("class_name", "=", "_EndpointHost"), ("state", "=", "ALIVE")])


def lose_the_learner_node(run_dir: str) -> dict:
    seen: dict = {}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(3)]  # two actors and the learner, one node each
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    log = open(Path(run_dir).with_suffix(".log"), "w")
    extra = ("--set", "resources.num_actors=2", "--set", "resources.learner_placement=actor")
    # the loss ends this run; a budget it could reach first would race with it
    first = train_command(run_dir, cluster.address, *extra, total_steps=10**12)
    training = subprocess.Popen(first, stdout=subprocess.DEVNULL, stderr=log)
    try:
        checkpoints = Path(run_dir) / "checkpoints"
        wait_for(lambda: learner_actors() and list(checkpoints.glob("ckpt-*.pt")), 180, "the learner and a checkpoint")
        learner_node = learner_actors()[0].node_id
        seen["steps_at_loss"] = Checkpointer(checkpoints).load_latest()[0]["progress"]["env_steps"]
        cluster.remove_node(next(node for node in nodes if node.node_id == learner_node))
        seen["exit_status"] = training.wait(timeout=300)
    finally:
        if training.poll() is None:
            training.terminate()
            training.wait(timeout=60)
    seen["message"] = Path(run_dir).with_suffix(".log").read_text()[-2000:]
    cluster.add_node(num_cpus=1)  # room for the learner again
    saved = Checkpointer(Path(run_dir) / "checkpoints").load_latest()[0]["progress"]["env_steps"]
    resume = train_command(run_dir, cluster.address, *extra, "--resume", total_steps=saved + 3000)
    seen["resume_status"] = subprocess.run(resume, stdout=subprocess.DEVNULL, stderr=log, timeout=300).returncode
    payload, _ = Checkpointer(Path(run_dir) / "checkpoints").load_latest()
    seen["saved_steps"], seen["resumed_steps"] = saved, payload["progress"]["env_steps"]
    ray.shutdown()
    cluster.shutdown()
    return seen


if __name__ == "__main__":
    scenario, directory = sys.argv[1], sys.argv[2]
    try:
        result = {"actor": lose_an_actor_node, "learner": lose_the_learner_node}[scenario](directory)
    except Exception as error:  # reported, so the test shows what went wrong
        result = {"error": f"{type(error).__name__}: {error}"}
    print("RESULT " + json.dumps(result), flush=True)
