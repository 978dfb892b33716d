"""The app the docker-compose demo cluster runs: the midnight scenario's job types.

`docker compose -f docker/compose.yaml up --scale engine=4` starts engines running
`rexec worker examples.cluster_app:app`; the `producer` service enqueues the midnight
load with `rexec demo-load` (see rexec/scenario.py).
"""

from rexec.scenario import app

__all__ = ["app"]
