"""How `make test` spreads the suites over pytest-xdist workers (`-n N --dist loadgroup`).

Each worker has its own embedded PostgreSQL and broker (the session fixtures), so most tests
may run anywhere. What must stay together is put in one group, run by one worker:

- tests that share a module- or package-scoped fixture (a service process started once for
  the module, the security suite's platform): one start instead of one per worker;
- the unit tests: CPU-bound, so on one worker they take at most one core from the integration
  tests, whose deadlines are in wall-clock time;
- tests marked ``xdist_group(name)``, as with plain ``--dist loadgroup``.

pytest-xdist 3.8's own loadgroup marks a group by appending ``@group`` to the node id, which
pytest >= 9.2 no longer lets a plugin change (pytest-xdist issue 1386): the groups would be
silently ignored. So the workers write the groups they collected to a file, and the scheduler
below (the same as loadgroup's: big groups first, then single tests in collection order) reads
them from there.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

GROUPS_DIR = "kpi_groups_dir"
UNIT = "tests/unit"


def groups_of(items: list[pytest.Item]) -> dict[str, str]:
    """Node id -> group name of every test that must share a worker with others."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    keys: dict[str, list[str]] = {}
    for item in items:
        linked = keys.setdefault(item.nodeid, [])
        module = item.nodeid.split("::", 1)[0]
        if module.startswith(UNIT + "/"):
            linked.append(UNIT)
        linked += [f"mark:{m.args[0] if m.args else m.kwargs.get('name', 'default')}"
                   for m in item.iter_markers("xdist_group")]  # fmt: skip
        info = getattr(item, "_fixtureinfo", None)
        for name in item.fixturenames if info is not None else ():
            defs = info.name2fixturedefs.get(name)
            scope = defs[-1].scope if defs else "function"
            if scope in ("class", "module"):
                linked.append(module)
            elif scope == "package":
                linked.append(f"{defs[-1].baseid}:{name}")
    for linked in keys.values():
        for key in linked[1:]:
            parent[root(key)] = root(linked[0])
    return {nodeid: root(linked[0]) for nodeid, linked in keys.items() if linked}


class GroupScheduling(LoadScopeScheduling):
    """loadgroup with the groups read from the workers' file instead of the node ids."""

    def __init__(self, config: pytest.Config, log: Any, groups_dir: Path) -> None:
        super().__init__(config, log)
        self.groups_dir = groups_dir
        self.groups: dict[str, str] = {}

    def schedule(self) -> None:
        # Called once every worker has collected, i.e. after each wrote its file.
        if self.collection is None:
            for path in sorted(self.groups_dir.glob("*.json")):
                self.groups.update(json.loads(path.read_text()))
        super().schedule()

    def _split_scope(self, nodeid: str) -> str:
        return self.groups.get(nodeid, nodeid)


class Controller:
    """The plugin in the process that runs the workers."""

    def __init__(self) -> None:
        self.groups_dir = Path(tempfile.mkdtemp(prefix="kpi-xdist-groups-"))

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[GROUPS_DIR] = str(self.groups_dir)

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") != "loadgroup":
            return None
        return GroupScheduling(config, log, self.groups_dir)

    def pytest_unconfigure(self) -> None:
        shutil.rmtree(self.groups_dir, ignore_errors=True)


class Worker:
    """The plugin in each worker: writes the groups of the tests it collected."""

    def __init__(self, groups_dir: str, worker_id: str) -> None:
        self.path = Path(groups_dir) / f"{worker_id}.json"

    @pytest.hookimpl(trylast=True)  # after every other hook reordered or deselected items
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.path.write_text(json.dumps(groups_of(items)))


def register(config: pytest.Config) -> None:
    """Install the controller's or the worker's half (nothing without `-n`)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        if GROUPS_DIR in workerinput:
            worker = Worker(workerinput[GROUPS_DIR], workerinput["workerid"])
            config.pluginmanager.register(worker, "kpi-xdist-groups")
    elif config.getvalue("dist") != "no":
        config.pluginmanager.register(Controller(), "kpi-xdist-groups")
