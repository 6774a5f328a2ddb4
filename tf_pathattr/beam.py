"""Deprecated location: the Beam job lives in :mod:`tf_pathattr.dataset.beam`; this re-export stays one release."""

from .dataset.beam import *  # noqa: F401,F403
from .dataset.beam import (  # noqa: F401
    NAMESPACE,
    AttributionModelHandler,
    BeamJobError,
    ExplainRecords,
    check_pipeline_args,
    default_num_shards,
    default_pipeline_args,
    explain_files,
    shard_of,
)
