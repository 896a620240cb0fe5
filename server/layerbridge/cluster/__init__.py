"""A pool of engine workers on Ray Serve, behind the same websocket server.

- :mod:`~layerbridge.cluster.replica`: the Serve deployment, one warm engine per replica.
- :mod:`~layerbridge.cluster.remote`: the front's engine that runs jobs on the replicas.
- :mod:`~layerbridge.cluster.events`: what a replica streams back, as plain data.
- :mod:`~layerbridge.cluster.pool`: starting Ray and Serve, and stopping them.

Needs the ``cluster`` extra (``pip install layerbridge[cluster]``); see docs/cluster.md.
"""
