"""`hydra/sweeper=joblist`: launch an explicit list of jobs (one override list each) as one batch.

Hydra's basic sweeper can only launch a full cartesian product. sweep.py needs to launch any subset
(e.g. the jobs of a half-finished sweep) as one multirun, which for SLURM is one job array, and each job
in a stable, named directory so a later `--resume` finds it. A failed job is logged, never raised: the
other jobs' results stand and sweep.py reports the failure from the run records.
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
        results = self.launcher.launch(batch, initial_job_idx=0)
        for job, r in zip(jobs, results):
            if r.status == JobStatus.FAILED:
                log.error("job %s raised: %r", job["name"], r._return_value)
        return results
