"""What to measure: a study (models, grid, options) as data (:mod:`.model`), its files (:mod:`.files`), its
stored schema (:mod:`.schema`) and its executor tables (:mod:`.executors`). No torch import."""

from archbench.study.executors import EXECUTOR_KEYS, EXECUTORS, SLURM_KEYS, TARGET_KEYS, SlurmOptions, table_problem
from archbench.study.files import (
    DEFAULT_STUDY,
    DEVICE_CHOICES,
    default_study_path,
    find_study,
    load_study,
    studies_dir,
    study_from_mapping,
)
from archbench.study.model import (
    BENCH_BATCHES,
    DEFAULT_BATCHES,
    DEFAULT_DEVICES,
    DEFAULT_DTYPES,
    DEFAULT_INTERLEAVE,
    DEFAULT_MODES,
    Grid,
    Study,
    StudyModel,
    StudyOptions,
    adhoc_study,
    resolve_models,
    study_from_dict,
)
from archbench.study.schema import STUDY

__all__ = [
    "BENCH_BATCHES", "DEFAULT_BATCHES", "DEFAULT_DEVICES", "DEFAULT_DTYPES", "DEFAULT_INTERLEAVE", "DEFAULT_MODES",
    "DEFAULT_STUDY", "DEVICE_CHOICES", "EXECUTORS", "EXECUTOR_KEYS", "SLURM_KEYS", "STUDY", "TARGET_KEYS", "Grid",
    "SlurmOptions", "Study", "StudyModel", "StudyOptions", "adhoc_study", "default_study_path", "find_study",
    "load_study", "resolve_models", "studies_dir", "study_from_dict", "study_from_mapping", "table_problem",
]
