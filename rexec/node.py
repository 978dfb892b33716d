"""Compatibility: the node supervisor now lives in :mod:`rexec.executor.node`
(``python -m rexec.node '<settings as JSON>'`` still starts a node)."""

from rexec.executor.node import Node, main, run_node

__all__ = ["Node", "main", "run_node"]

if __name__ == "__main__":
    raise SystemExit(main())
