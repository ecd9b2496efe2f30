"""A stored run as the store lists it (:class:`RunInfo`): its ``runs`` record, checked against its schema, with
its cells summarised; whether it is still running is read from the process that writes it
(:mod:`archbench.env.liveness`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from archbench.env.liveness import owner_state
from archbench.errors import PATH_ECHO_LIMIT, StoreError, quoted


@dataclass(frozen=True)
class RunInfo:
    """One stored run with a summary of its cells (``models`` and ``devices`` in the order measured)."""

    id: int
    started_utc: str
    finished_utc: str | None  # None: still running, or the process was killed
    command: str
    title: str
    out_path: str | None
    planned_cells: int
    env: Mapping[str, Any] = field(hash=False)
    git_commit: str | None
    n_cells: int
    n_ok: int
    models: tuple[str, ...]
    devices: tuple[str, ...]
    state: str = "finished"  # finished | running | interrupted (its process is gone) | unknown (another host)

    @property
    def n_failed(self) -> int:
        return self.n_cells - self.n_ok

    @property
    def torch_version(self) -> str | None:
        return self.env.get("torch")

    def to_json(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)} | {
            "n_failed": self.n_failed}


def run_info_from_record(record: tuple, groups: list[tuple], path: Path) -> RunInfo:
    """A ``runs`` record (checked against its schema) with its cells counted per (model, device, cells, ok
    cells), in measured order."""
    from archbench.files import parse_json
    from archbench.results.schemas import RUN
    from archbench.schemas import validate

    where = f"the results store {quoted(path, PATH_ECHO_LIMIT)}, run {record[0]}"
    names = ("id", "started_utc", "finished_utc", "command", "title", "out_path", "planned_cells", "env", "git_commit")
    values = dict(zip(names, record))
    host, pid, token = record[len(names):len(names) + 3]
    values["env"] = parse_json(values["env"], f"{where}: env", "an environment", StoreError) if isinstance(
        values["env"], str) else values["env"]
    run = validate(RUN, values, where, StoreError)
    run_id, started, finished, command, title, out_path, planned, env, commit = (run[n] for n in names)
    state = "finished" if finished is not None else owner_state(host, pid, token)
    return RunInfo(run_id, started, finished, command, title or "", out_path, planned or 0, env, commit,
                   n_cells=sum(g[2] for g in groups), n_ok=sum(g[3] for g in groups),
                   models=tuple(dict.fromkeys(g[0] for g in groups)), devices=tuple(dict.fromkeys(g[1] for g in groups)),
                   state=state)
