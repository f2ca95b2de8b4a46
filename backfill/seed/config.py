"""The seed's ``config.py`` names, and where each setting really lives in this tool.

The seed edits ``config.py`` to configure a run; this tool reads a TOML file instead
(``--config`` on the command line, ``$ICEBERG_BACKFILL_CONFIG`` for the Python calls that take
no configuration). These names hold the tool's defaults so seed code that imports them
runs, and each comment names the setting that changes the tool's behaviour. Editing the
values here changes only what code passes explicitly (``history_columns=HISTORY_COLUMNS``,
``create_spark_session(conf=SPARK_CONFIGS)``).
"""

from __future__ import annotations

from backfill.config import DEFAULT_HISTORY_COLUMNS, DEFAULT_MAX_PARALLEL, HistoryColumn, RunConfig, TableConfig
from cluster.spark_session import SMALL_CLUSTER_DEFAULTS

#: The seed's 20 history columns, ``HistoryColumn(array_column, value_column)`` as in the
#: seed. Tool setting: ``[tables] history_columns``.
HISTORY_COLUMNS: list[HistoryColumn] = list(DEFAULT_HISTORY_COLUMNS)

#: Spark settings of each session the tool starts. Tool setting: ``[spark] conf`` (these
#: are its small-cluster defaults; the seed's 20000 shuffle partitions suit a large cluster).
SPARK_CONFIGS: dict[str, str] = dict(SMALL_CLUSTER_DEFAULTS)

#: History length W. Tool setting: ``[tables] window`` / ``--window``.
MAX_HISTORY_MONTHS: int = TableConfig().window

#: MERGEs at once (the seed's 4 is ``--max-parallel 4``). Tool setting: ``[run] max_parallel``.
MAX_PARALLEL_PARTITIONS: int = DEFAULT_MAX_PARALLEL

#: Extra attempts per partition on a transient failure. Tool setting: ``[run] retries``.
RETRY_COUNT: int = RunConfig().retries

__all__ = ["HISTORY_COLUMNS", "MAX_HISTORY_MONTHS", "MAX_PARALLEL_PARTITIONS", "RETRY_COUNT", "SPARK_CONFIGS",
           "HistoryColumn"]
