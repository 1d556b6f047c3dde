"""The servers the platform is measured against, all on 127.0.0.1:

* the ceiling per language: the same handler behind a bare server of that
  language (`peers/bare_python.py`, `peers/bare_node.js`);
* Kubeless' Python runtime pattern (`peers/kubeless_python.py`: bottle on
  cherrypy, a forked process per request), run from a venv that `run.sh`
  prepares;
* the OpenFaaS of-watchdog pattern in http mode (`peers/watchdog/main.go`,
  built by `run.sh`) in front of the bare Node.js server.
"""

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import procs

BENCH = Path(__file__).resolve().parent.parent
PEERS = BENCH / "peers"
FUNCTIONS = BENCH / "functions"


@dataclass
class Peer:
    key: str
    label: str
    language: str
    argv: list
    port: int
    env: dict = field(default_factory=dict)
    cwd: Path = FUNCTIONS

    def start(self, log):
        env = dict(os.environ)
        env.update(self.env)
        return procs.start(self.argv, env=env, cwd=str(self.cwd), log=log)


def bare_python(handler, port):
    return Peer(
        "bare-python",
        "bare Python server (asyncio, 1 process)",
        "python",
        [sys.executable, str(PEERS / "bare_python.py"), str(port), str(FUNCTIONS / "handlers.py"), handler],
        port,
    )


def bare_node(handler, port):
    return Peer(
        "bare-nodejs",
        "bare Node.js `http` server (1 process)",
        "nodejs",
        ["node", str(PEERS / "bare_node.js"), str(port), str(FUNCTIONS / "handlers.js"), handler],
        port,
    )


def kubeless_python(handler, port, venv_python):
    return Peer(
        "kubeless-python",
        "Kubeless Python runtime pattern (bottle + cherrypy, process per request)",
        "python",
        [venv_python, str(PEERS / "kubeless_python.py")],
        port,
        env={
            "MOD_NAME": "handlers",
            "FUNC_HANDLER": handler,
            "FUNC_PORT": str(port),
            "FUNC_TIMEOUT": "180",
            "KUBELESS_DIR": str(FUNCTIONS),
            "PYTHONUNBUFFERED": "1",
        },
        # Kubeless ran `python /_kubeless.py` from `/`: the fork server
        # (started with `python -c`) finds the module to preload through the
        # working directory, so it must be the script's own.
        cwd=PEERS,
    )


def watchdog_node(handler, port, watchdog_bin):
    upstream = procs.free_port()
    return Peer(
        "watchdog-nodejs",
        "OpenFaaS of-watchdog pattern (Go, http mode) + Node.js `http`",
        "nodejs",
        [watchdog_bin],
        port,
        env={
            "fprocess": f"node {PEERS / 'bare_node.js'} {upstream} {FUNCTIONS / 'handlers.js'} {handler}",
            "upstream_url": f"http://127.0.0.1:{upstream}",
            "port": str(port),
            "exec_timeout": "180s",
        },
    )
