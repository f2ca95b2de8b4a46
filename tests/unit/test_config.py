import pytest

from backfill.config import DEFAULT_HISTORY_COLUMNS, CatalogConfig, Config, HistoryColumn, load_config, with_overrides
from backfill.errors import CatalogUnsafeError, ConfigError


def test_defaults_are_the_seed_layout():
    cfg = Config().validated()
    assert len(DEFAULT_HISTORY_COLUMNS) == 20
    assert DEFAULT_HISTORY_COLUMNS[0] == HistoryColumn("balance_history", "balance")
    assert cfg.tables.window == 36 and cfg.tables.buckets == 64
    assert cfg.table_parts("target") == ("demo", "db", "accounts_history")


def test_toml_and_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("""
[tables]
target_table = "demo.bank.hist"
window = 12
history_columns = [["bal_h", "bal"], {array_column = "pay_h", value_column = "pay"}]
[catalog]
type = "rest"
properties = { uri = "http://127.0.0.1:8181", token = "s3cr3t" }
[run]
max_parallel = 4
""")
    cfg = load_config(f, run__max_parallel=None, tables__window=24).validated()
    assert cfg.tables.window == 24
    assert cfg.max_parallel == 4
    assert [h.value_column for h in cfg.tables.history_columns] == ["bal", "pay"]
    assert cfg.catalog.redacted_properties()["token"] == "***"
    assert cfg.table_parts("target") == ("demo", "bank", "hist")


@pytest.mark.parametrize("toml,match", [
    ("[tables]\nwindow = 0", "window"),
    ("[tables]\naccount_column = \"a;b\"", "account column"),
    ("[tables]\ntarget_table = \"other.db.t\"", "names catalog"),
    ("[tables]\nhistory_columns = [[\"a\", \"x\"], [\"a\", \"y\"]]", "configured twice"),
    ("[run]\nmax_parallel = 0", "max_parallel"),
    ("[run]\norder = \"random\"", "order"),
    ("[bogus]\nx = 1", "unknown section"),
    ("[run]\nspeed = 1", "unknown key"),
    ("[tables\n", "not valid TOML"),
    ("[run]\ncheck_array_lengths = \"no\"", r"\[run\] check_array_lengths must be bool, got 'no'"),
    ("[run]\nmax_parallel = \"4\"", r"\[run\] max_parallel must be int, got '4'"),
    ("[run]\nretries = true", r"\[run\] retries must be int, got True"),
    ("[tables]\nwindow = 36.5", r"\[tables\] window must be int, got 36.5"),
    ("[run]\nray_address = 5", r"\[run\] ray_address must be str, got 5"),
    ("[run]\nkeep_warm_seconds = -1", "keep_warm_seconds must be between 0 and 86400"),
    ("[run]\nkeep_warm_seconds = 100000", "keep_warm_seconds must be between 0 and 86400"),
    ("[run]\nkeep_warm_seconds = nan", "keep_warm_seconds must be between 0 and 86400"),
    ("[spark]\nengine = \"yarn\"", "spark engine must be one of raydp, local, auto, got 'yarn'"),
    ("[spark]\nexecutor_memory = \"lots\"", "spark executor_memory: 'lots' is not a memory size"),
])
def test_bad_config_is_named(tmp_path, toml, match):
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match=match):
        load_config(f).validated()


def test_toml_types_that_fit_are_accepted(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[run]\nretry_backoff_seconds = 1\ncheck_array_lengths = false\nray_address = \"auto\"\n")
    run = load_config(f).validated().run
    assert (run.retry_backoff_seconds, run.check_array_lengths, run.ray_address) == (1, False, "auto")


def test_hadoop_catalog_refuses_parallel_runs():
    cfg = Config(catalog=CatalogConfig(type="hadoop"))
    cfg.validated()
    with pytest.raises(CatalogUnsafeError, match="atomic commits"):
        with_overrides(cfg, run__max_parallel=3).validated()


def test_unset_max_parallel_is_two_merges_in_one_session_but_serial_on_a_non_atomic_catalog(tmp_path):
    cfg = Config().validated()
    assert (cfg.max_parallel, cfg.run.partitions_per_actor, cfg.run.partitions_per_merge) == (2, 2, 12)
    assert Config(catalog=CatalogConfig(type="hadoop")).validated().max_parallel == 1
    f = tmp_path / "c.toml"
    f.write_text("[run]\nmax_parallel = 5\npartitions_per_merge = 1\n")
    run = load_config(f).validated().run
    assert (run.max_parallel, run.partitions_per_merge) == (5, 1)
    for bad, msg in (("partitions_per_merge = 0", "partitions_per_merge must be between 1 and 1000"),
                     ('partitions_per_merge = "12"', "partitions_per_merge must be int")):
        f.write_text(f"[run]\n{bad}\n")
        with pytest.raises(ConfigError, match=msg):
            load_config(f).validated()


def test_missing_config_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/x.toml")


def test_batching_and_session_options_reach_the_config_from_the_command_line():
    from backfill import cli
    from backfill.cli import options

    args = cli.build_parser().parse_args(["backfill", "--backfill-id", "b", "--partitions-per-merge", "3",
                                          "--partitions-per-actor", "1", "--max-parallel", "4"])
    run = options.config_from_args(args).run
    assert (run.partitions_per_merge, run.partitions_per_actor, run.max_parallel) == (3, 1, 4)
    args = cli.build_parser().parse_args(["backfill", "--backfill-id", "b", "--partitions-per-merge", "0"])
    with pytest.raises(ConfigError, match="partitions_per_merge"):
        options.config_from_args(args)


def test_keep_warm_reaches_the_config_from_the_command_line_and_is_off_by_default():
    from backfill import cli
    from backfill.cli import options

    args = cli.build_parser().parse_args(["backfill", "--backfill-id", "b"])
    assert options.config_from_args(args).run.keep_warm_seconds == 0
    args = cli.build_parser().parse_args(["backfill", "--backfill-id", "b", "--keep-warm", "600"])
    assert options.config_from_args(args).run.keep_warm_seconds == 600
    args = cli.build_parser().parse_args(["backfill", "--backfill-id", "b", "--keep-warm", "-5"])
    with pytest.raises(ConfigError, match="keep_warm_seconds"):
        options.config_from_args(args)


def test_config_toml_reads_back_to_the_same_config(tmp_path):
    from backfill.config import RunConfig, SparkConfig, TableConfig, config_toml

    cfg = Config(
        tables=TableConfig(target_table="ns.t", staging_table="ns.s", audit_table="ns.a", window=24, buckets=4,
                           history_columns=(HistoryColumn("a_history", "a"), HistoryColumn("b_h", 'b"q'))),
        catalog=CatalogConfig(type="rest", warehouse="s3://w", properties={"uri": "http://x", "s3.path-style": "true"}),
        spark=SparkConfig(executor_cores=2, executor_memory="768m", conf={"spark.sql.shuffle.partitions": "4"}),
        run=RunConfig(max_parallel=3, keep_warm_seconds=60.0, check_array_lengths=False, retry_backoff_seconds=0.5),
    )
    f = tmp_path / "c.toml"
    f.write_text(config_toml(cfg))
    assert load_config(f) == cfg
    assert config_toml(Config()) == "\n"  # defaults: nothing to write


def test_the_spark_engine_reaches_the_config_from_the_command_line_and_is_auto_by_default():
    from backfill import cli
    from backfill.cli import options

    args = cli.build_parser().parse_args(["backfill", "--backfill-id", "b"])
    assert options.config_from_args(args).spark.engine == "auto"
    args = cli.build_parser().parse_args(["backfill", "--backfill-id", "b", "--spark-engine", "local"])
    assert options.config_from_args(args).spark.engine == "local"
