"""`hydra/sweeper=joblist`: launch an explicit list of jobs (one override list each) as one batch.

Hydra's basic sweeper can only launch a full cartesian product. sweep.py needs to launch any subset
(e.g. the jobs of a half-finished sweep) as one multirun, which for SLURM is one job array, and each job
in a stable, named directory so a later `--resume` finds it. A failed job is logged, never raised: the
other jobs' results stand and sweep.py reports the failure from the run records.

With Hydra's basic launcher (jobs one after another in this process) the jobs are handed over one at a
time, so that a line of progress is printed as each starts and ends; that launcher runs a batch the same
way, job by job, so nothing else changes.
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List

import yaml
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

from growth.sweeps import job_status

log = logging.getLogger(__name__)


@dataclass
class JobListSweeperConf:
    _target_: str = "hydra_plugins.growth_sweeper.joblist.JobListSweeper"
    jobs_file: str = "???"


ConfigStore.instance().store(group="hydra/sweeper", name="joblist", node=JobListSweeperConf, provider="growth")


class JobListSweeper(Sweeper):
    def __init__(self, jobs_file: str):
        super().__init__()
        self.jobs_file = jobs_file
        self.config = self.launcher = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        jobs = yaml.safe_load(Path(self.jobs_file).read_text()) or []
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        batch = [[*arguments, *job["overrides"], f"hydra.sweep.subdir='{job['name']}'"] for job in jobs]
        if not batch:
            log.info("joblist: nothing to launch")
            return []
        if str(self.config.hydra.launcher.get("_target_", "")).endswith(".BasicLauncher"):
            results = self._launch_one_by_one(batch, jobs, sweep_dir)
        else:
            results = self.launcher.launch(batch, initial_job_idx=0)
        for job, r in zip(jobs, results):
            if r.status == JobStatus.FAILED:
                log.error("job %s raised: %r", job["name"], r._return_value)
        return results

    def _launch_one_by_one(self, batch, jobs, sweep_dir: Path) -> list:
        results, ended = [], {}
        for i, (overrides, job) in enumerate(zip(batch, jobs)):
            print(f"{_counts(ended, len(jobs))} starting {job['name']}", flush=True)
            results += self.launcher.launch([overrides], initial_job_idx=i)
            status = job_status(sweep_dir / job["name"])
            if results[-1].status == JobStatus.FAILED and status in (None, "unfinished"):
                status = "raised"  # an exception before the run wrote its summary (logged below)
            ended[job["name"]] = status or "no record"
            print(f"{_counts(ended, len(jobs))} {job['name']}: {ended[job['name']]}", flush=True)
        return results


def _counts(ended: dict, total: int) -> str:
    """[3/12 ended: 2 completed, 1 failed]"""
    statuses = list(ended.values())
    parts = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
    return f"[{len(ended)}/{total} ended{': ' + parts if parts else ''}]"
