"""Config.load (TOML, [testing], errors) and the time formats users type."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from filetwin.config import Config, default_state_dir
from filetwin.errors import UsageError
from filetwin.timefmt import iso, parse_time

# --- Config -----------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "filetwin.toml"
    p.write_text(text)
    return p


def test_load_toml_file(tmp_path: Path) -> None:
    cfg_file = write(
        tmp_path,
        'repository = "/srv/repo"\n'
        "workers = 4\n"
        "timeout_floor_s = 5\n"
        "[testing]\n"
        "worker_stall_s = 0.25\n"
        "coalesce_ms = 7\n",
    )
    cfg = Config.load(state_dir=tmp_path / "state", config_file=cfg_file)
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.repository == "/srv/repo" and cfg.repository_location == "/srv/repo"
    assert cfg.workers == 4
    assert cfg.timeout_floor_s == 5
    assert cfg.worker_stall_s == 0.25
    assert cfg.coalesce_ms == 7
    assert cfg.config_file == cfg_file
    assert cfg.socket_path == tmp_path / "state" / "filetwin.sock"
    assert cfg.table_path == tmp_path / "state" / "table.sqlite"


def test_state_dir_argument_wins_over_file(tmp_path: Path) -> None:
    cfg_file = write(tmp_path, f'state_dir = "{tmp_path}/from-file"\n')
    assert Config.load(config_file=cfg_file).state_dir == tmp_path / "from-file"
    cfg = Config.load(state_dir=tmp_path / "arg", config_file=cfg_file)
    assert cfg.state_dir == tmp_path / "arg"
    assert cfg.repository_location == str(tmp_path / "arg" / "repository")


@pytest.fixture(autouse=True)
def no_default_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the machine's own /etc/filetwin or ~/.config/filetwin."""
    monkeypatch.delenv("FILETWIN_CONFIG", raising=False)
    monkeypatch.setattr("filetwin.config.default_config_file", lambda: tmp_path / "no-default.toml")


def test_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILETWIN_STATE_DIR", str(tmp_path / "env"))
    assert default_state_dir() == tmp_path / "env"
    cfg = Config.load()
    assert cfg.state_dir == tmp_path / "env"
    assert (cfg.workers, cfg.default_keep, cfg.default_retries) == (2, 50, 3)
    monkeypatch.chdir(tmp_path)
    assert Config.load(state_dir="rel").state_dir == tmp_path / "rel"


def test_missing_file_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=f"config file {tmp_path}/nope.toml does not exist"):
        Config.load(state_dir=tmp_path, config_file=tmp_path / "nope.toml")


def test_directory_as_file_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=f"cannot read config file {tmp_path}"):
        Config.load(state_dir=tmp_path, config_file=tmp_path)


@pytest.mark.parametrize("text", ["workers = \n", "[testing\n", "a = 1\na = 2\n", "= 3\n"])
def test_bad_toml_is_usage_error(tmp_path: Path, text: str) -> None:
    cfg_file = write(tmp_path, text)
    with pytest.raises(UsageError, match=f"config file {cfg_file} is not valid TOML"):
        Config.load(state_dir=tmp_path, config_file=cfg_file)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workers = 0\n", "workers must be between 1 and 64, not 0"),
        ("workers = 65\n", "workers must be between 1 and 64"),
        ("coalesce_ms = 51\n", "coalesce_ms must be between 0 and 50"),
        ("default_keep = 0\n", "default_keep must be between 1"),
        ("default_retries = -1\n", "default_retries must be between 0 and 100"),
        ("timeout_floor_s = 0\n", "timeout_floor_s must be a positive number"),
        ("timeout_rate = -1.0\n", "timeout_rate must be a positive number"),
        ("retry_backoff_s = -1\n", "retry_backoff_s must be a number of seconds"),
        ("[testing]\nworker_stall_s = nan\n", "worker_stall_s must be a number of seconds"),
        ('workers = "four"\n', "config setting workers must be an integer, not 'four'"),
        ("workers = 2.5\n", "config setting workers must be an integer"),
        ("workers = true\n", "config setting workers must be an integer"),
        ('timeout_rate = "fast"\n', "config setting timeout_rate must be a number"),
        ("repository = 3\n", "config setting repository must be a string"),
        ('[testing]\nworker_stall_s = "1"\n', "config setting worker_stall_s must be a number"),
        ("testing = 3\n", r"\[testing\] in the config file must be a table"),
        ("workers = 2\nwrokers = 2\n", r"line 2: unknown setting 'wrokers'"),
        ("[testing]\nstall = 1\n", r"line 2: unknown setting '\[testing\] stall'"),
        ("[dashbord]\nport = 1\n", r"line 1: unknown setting 'dashbord'"),
        ('workers = 2\n"on_evnt" = "x"\n', r"line 2: unknown setting 'on_evnt'"),
        ('encryption = "aes"\n', "encryption must be one of none, repokey, keyfile, not 'aes'"),
        ("[dashboard]\nport = 0\n", r"\[dashboard\] port must be an integer >= 1, not 0 \(line 2"),
        ("[dashboard]\nenabled = 1\n", r"\[dashboard\] enabled must be true or false"),
        (
            '[[protect]]\npath = "/a"\n[[protect]]\npath = "/b"\nkeep = "x"\n',
            r"\[protect\] keep must be an integer, not 'x' \(line 5\)",
        ),
        (
            '[[protect]]\npath = "/a"\n\n[[protect]]\nbackup = "on-write"\n',
            r"line 4: \[\[protect\]\] needs 'path'",
        ),
        (
            '[[replica]]\nlocation = "/r"\nfoo = 1\n',
            r"line 3: unknown setting '\[replica\] foo' \(known: location, name,",
        ),
        ('[[replica]]\nname = "x"\n', r"line 1: \[\[replica\]\] needs 'location'"),
        ("protect = 3\n", r"config setting protect must be an array of tables"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, text: str, message: str) -> None:
    cfg_file = write(tmp_path, text)
    with pytest.raises(UsageError, match=message):
        Config.load(state_dir=tmp_path, config_file=cfg_file)


def test_config_defaults_are_the_declared_ones(tmp_path: Path) -> None:
    """Config's fields and SETTINGS, the file's schema, never drift apart."""
    from filetwin.config import SETTINGS

    cfg = Config.load(state_dir=tmp_path)
    assert {n: getattr(cfg, n) for n, _, _, _ in SETTINGS} == {n: d for n, _, d, _ in SETTINGS}
    assert cfg.config_file is None


def test_default_config_file_by_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real default_config_file
    from filetwin import config

    monkeypatch.setattr(config.os, "geteuid", lambda: 0)
    assert config.default_config_file() == Path("/etc/filetwin/filetwin.toml")
    monkeypatch.setattr(config.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.default_config_file() == tmp_path / "xdg" / "filetwin" / "filetwin.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config.default_config_file() == tmp_path / "home/.config/filetwin/filetwin.toml"


def test_default_file_read_when_present_env_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = tmp_path / "no-default.toml"
    default.write_text("workers = 5\n")
    assert Config.load(state_dir=tmp_path).workers == 5
    other = write(tmp_path, "workers = 6\n")
    monkeypatch.setenv("FILETWIN_CONFIG", str(other))
    assert Config.load(state_dir=tmp_path).workers == 6
    assert Config.load(state_dir=tmp_path, config_file=default).workers == 5
    monkeypatch.setenv("FILETWIN_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(UsageError, match="gone.toml does not exist"):
        Config.load(state_dir=tmp_path)


def test_int_accepted_where_float_expected(tmp_path: Path) -> None:
    cfg_file = write(tmp_path, "retry_backoff_s = 0\ntimeout_rate = 1000\n")
    cfg = Config.load(state_dir=tmp_path, config_file=cfg_file)
    assert (cfg.retry_backoff_s, cfg.timeout_rate) == (0, 1000)


# --- times --------------------------------------------------------------------

T = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T10:00:00Z", T),
        ("2026-11-25T10:00:00z", T),
        ("2026-11-25T10:00:00", T),
        ("2026-11-25 10:00:00", T),
        ("2026-11-25T12:00:00+02:00", T),
        ("2026-11-25T05:00:00-05:00", T),
        ("2026-11-25T10:00:00.250Z", T + 0.25),
        ("2026-11-25", T - 10 * 3600),
        (str(int(T)), T),
        (f"  {T}  ", T),
        ("1700000000.5", 1700000000.5),
        ("0", 0.0),
        (1700000000, 1700000000.0),
        (1700000000.25, 1700000000.25),
    ],
)
def test_parse_time(text: str | float, expected: float) -> None:
    assert parse_time(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2026-13-01", "25/11/2026", "10:00", "nan", "inf", "-inf", "1e400"]
)
def test_parse_time_garbage_is_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="time"):
        parse_time(text)


def test_parse_time_rejects_bool_and_non_finite_numbers() -> None:
    with pytest.raises(UsageError):
        parse_time(True)
    with pytest.raises(UsageError):
        parse_time(math.inf)


def test_iso_round_trips() -> None:
    assert iso(None) is None
    assert iso(T + 0.25) == "2026-11-25T10:00:00.250Z"
    assert parse_time(iso(T + 0.25) or "") == T + 0.25


def test_the_configuration_page_is_generated_from_the_settings() -> None:
    """docs/configuration.md says what SETTINGS declares (regenerate it with
    `python -c "import filetwin.config as c; print(c.render_settings_doc(), end='')"
    > docs/configuration.md`)."""
    from filetwin.config import render_settings_doc

    page = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
    assert page.read_text() == render_settings_doc()


def test_tables_are_read_in_order(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[dashboard]\nenabled = true\nport = 9000\n'
        '[[replica]]\nlocation = "s3://b/p"\nname = "off"\n'
        '[[protect]]\npath = "/a/*.db"\nbackup = "on-write"\n[[protect]]\npath = "/b"\n'
    )
    cfg = Config.load(tmp_path / "state", f)
    assert cfg.dashboard.enabled and cfg.dashboard.port == 9000
    assert [(r.name, r.location) for r in cfg.replicas] == [("off", "s3://b/p")]
    assert [(p.path, p.backup) for p in cfg.protect] == [("/a/*.db", "on-write"), ("/b", None)]
    bare = Config(state_dir=tmp_path / "state")
    assert not bare.dashboard.enabled and bare.replicas == () and bare.protect == ()
