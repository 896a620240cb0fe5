"""The pool of workers: Ray, Serve, and one replica of the engine per worker.

With no address, the pool starts a Ray cluster of this machine alone, every listener on
127.0.0.1. With ``auto`` or ``HOST:PORT`` it joins a cluster started with ``ray start``
(see docs/cluster.md) and leaves it running when it stops. Serve runs without its HTTP
proxy: the websocket server is the only way in.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from layerbridge.cluster.remote import RemoteEngine
from layerbridge.cluster.replica import EngineInfo, EngineReplica

log = logging.getLogger("layerbridge.cluster")

APP_NAME = "layerbridge"
DEPLOYMENT_NAME = "engine"
#: Read by Ray when it is first imported: 0 keeps a local node on the loopback address
#: (otherwise Ray registers the machine's external address and listens there).
LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class PoolConfig:
    """How many replicas of which engine, with what each one holds."""

    engine: str
    engine_options: dict[str, Any] = field(default_factory=dict)
    replicas: int = 1
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    #: None: a Ray cluster of this machine alone, on loopback; "auto" or HOST:PORT: join
    #: the cluster ``ray start`` made there.
    address: str | None = None

    def check(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"--replicas must be at least 1, not {self.replicas}")
        if self.gpus_per_replica < 0:
            raise ValueError(f"--gpus-per-replica must be 0 or more, not {self.gpus_per_replica}")


class WorkerPool:
    """Starts (or joins) Ray, deploys the replicas, and takes it all down again."""

    def __init__(self, config: PoolConfig) -> None:
        config.check()
        self.config = config
        self.engine: RemoteEngine | None = None
        self._own_cluster = False

    def start(self) -> RemoteEngine:
        """Deploy the replicas and wait until each has its engine warm."""
        self._connect()
        from ray import serve

        serve.start(proxy_location="Disabled")
        config = self.config
        deployment = serve.deployment(EngineReplica).options(  # type: ignore[attr-defined]
            name=DEPLOYMENT_NAME,
            num_replicas=config.replicas,
            # One job per replica; the front's fair queue holds the rest.
            max_ongoing_requests=1,
            ray_actor_options={"num_cpus": config.cpus_per_replica,
                               "num_gpus": config.gpus_per_replica},
        )
        app = deployment.bind(config.engine, config.engine_options, self._own_cluster)
        handle = serve.run(app, name=APP_NAME, route_prefix=None)
        info: EngineInfo = handle.describe.remote().result()
        self.engine = RemoteEngine(handle, info, config.replicas)
        log.info("%d %s replica(s) ready", config.replicas, info.name)
        return self.engine

    def running_replicas(self) -> int:
        """Replicas Serve reports running now (a dead one is replaced within seconds)."""
        from ray import serve

        app = serve.status().applications.get(APP_NAME)
        if app is None:
            return 0
        states = app.deployments[DEPLOYMENT_NAME].replica_states
        return int(states.get("RUNNING", 0))  # type: ignore[call-overload]  # a str enum

    def stop(self) -> None:
        """Remove the replicas; stop Ray too when this pool started it."""
        import ray
        from ray import serve

        if not ray.is_initialized():
            return
        try:
            if self._own_cluster:
                serve.shutdown()  # type: ignore[no-untyped-call]
            else:
                serve.delete(APP_NAME)
        finally:
            ray.shutdown()
            self.engine = None

    def _connect(self) -> None:
        if self.config.address is None:
            start_local_ray(self.config)
            self._own_cluster = True
            return
        import ray

        ray.init(address=self.config.address)


def start_local_ray(config: PoolConfig) -> None:
    """A Ray cluster of this machine alone, every listener on the loopback address."""
    os.environ[LOOPBACK_ONLY_ENV] = "0"
    import ray
    from ray._private import ray_constants

    if ray_constants.ENABLE_RAY_CLUSTER:
        raise RuntimeError(
            f"Ray was imported before {LOOPBACK_ONLY_ENV}=0 was set, so a local cluster "
            "would listen on the machine's external address: start the pool before "
            "anything imports ray"
        )

    cpus = max(os.cpu_count() or 1, round(config.replicas * config.cpus_per_replica + 0.5))
    ray.init(
        address="local",
        _node_ip_address=LOOPBACK,
        include_dashboard=False,
        num_cpus=cpus,
    )
