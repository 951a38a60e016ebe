"""Results: the tables halbench writes and how they are written, read and derived.

    schema.py   every table's columns and types (one cost-column vocabulary), `frame`
    io.py       atomic writes (parquet, JSON, text); a full disk is one line
    metrics.py  primary_k and convergence, shared by the trainer and the report
    read.py     a run directory's tables and suite record, checked against the schemas
    env.py      what env.json records: versions, device, git sha
    config.py   a sampled configuration's vocabulary (loss.<param>, cfg_ columns, the space)
    embeddings.py  saved test embeddings (eval.save_embeddings): one parquet file per trial

report/ reads the files these write and nothing else.
"""

from halbench.results.env import (
    environment,
    git_sha,
)
from halbench.results.io import (
    write_bytes_atomic,
    write_error,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)
from halbench.results.metrics import (
    convergence,
    primary_k,
)
from halbench.results.read import (
    SUITE_JSON,
    SUITE_YAML,
    read_suite_record,
    read_table,
)
from halbench.results.schema import (
    EPOCH_SCHEMA,
    PROFILE_SCHEMA,
    STANDARD_KS,
    STATUSES,
    TRIAL_SCHEMA,
    TUNING_SCHEMA,
    frame,
)

__all__ = [
    "EPOCH_SCHEMA",
    "PROFILE_SCHEMA",
    "STANDARD_KS",
    "STATUSES",
    "SUITE_JSON",
    "SUITE_YAML",
    "TRIAL_SCHEMA",
    "TUNING_SCHEMA",
    "convergence",
    "environment",
    "frame",
    "git_sha",
    "primary_k",
    "read_suite_record",
    "read_table",
    "write_bytes_atomic",
    "write_error",
    "write_json_atomic",
    "write_parquet_atomic",
    "write_text_atomic",
]
