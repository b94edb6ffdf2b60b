"""The config: packaged defaults, precedence of settings, validation, and documentation."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from syncwatch.commands.dashboard import dashboard_env
from syncwatch.commands.demo import demo_environment
from syncwatch.config import ConfigError, load_config
from syncwatch.config.settings import SETTINGS

README = Path(__file__).resolve().parents[1] / "README.md"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "syncwatch.toml"
    path.write_text(text)
    return str(path)


def test_the_packaged_defaults_describe_the_simulated_network() -> None:
    config = load_config(environ={})
    assert set(config.file.processes) == {"order", "inventory_sync", "return"}
    assert config.file.key_types["sku"].identity is False
    assert config.file.partners["3pl-fastship"].alternates
    assert all(config.origins[s.name] == "default" for s in SETTINGS)


def test_settings_precedence_is_flag_then_environment_then_file_then_default(tmp_path: Path) -> None:
    path = write(tmp_path, "[settings]\nport = 1001\nhost = '0.0.0.0'\ndashboard_port = 1003\n")
    environ = {"SYNCWATCH_PORT": "2001", "SYNCWATCH_HOST": "10.0.0.1"}
    config = load_config(path, {"port": 3001}, environ)
    assert (config.port, config.host, config.dashboard_port, config.tail_interval_s) == (3001, "10.0.0.1", 1003, 1.0)
    assert config.origins["port"] == "--port"
    assert config.origins["host"] == "SYNCWATCH_HOST"
    assert config.origins["dashboard_port"].endswith("settings.dashboard_port")


def test_the_config_path_may_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[settings]\nlog_level = 'debug'\n")
    assert load_config(environ={"SYNCWATCH_CONFIG": path}).log_level == "debug"


def test_a_user_file_merges_named_tables_and_replaces_lists(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[[key_rules]]\nattribute = 'order.id'\nkey = 'marketplace_order'\n\n"
        "[runbooks]\ntimeout = 'Call the ERP desk first.'\n",
    )
    config = load_config(path, environ={})
    assert len(config.file.key_rules) == 1
    assert config.file.runbooks["timeout"] == "Call the ERP desk first."
    assert "validation" in config.file.runbooks


def test_a_user_file_with_users_replaces_the_demo_users(tmp_path: Path) -> None:
    path = write(tmp_path, "[users.dana]\nrole = 'lead'\n\n[collectors]\nmax_clock_skew = '2h'\n")
    config = load_config(path, environ={})
    assert set(config.file.users) == {"dana"}
    assert "alex" in load_config(environ={}).file.users
    assert config.file.collectors.max_clock_skew.total_seconds() == 7200


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[settings]\nsla_at_risk_share = 'most'", "settings.sla_at_risk_share: expected a number"),
        ("[settings]\nlog_level = 'loud'", "expected one of debug, info, warning, error"),
        (
            "[[key_rules]]\nattribute = 'x'",
            "key_rules #1 (attribute = \"x\"): attribute and json_pointer rules need 'key'",
        ),
        ("[[key_rules]]\nattribute = 'x'\nregex = 'y'\nkey = 'sku'", "expected exactly one of"),
        ("[[key_rules]]\nattribute = 'x'\nkey = 'parcel'", "unknown key type 'parcel'"),
        ("[[key_rules]]\npath_template = '/orders/{erp_ordr}'", "unknown key type 'erp_ordr' (known: adjustment,"),
        ("[[key_rules]]\npath_template = '/orders/erp_order'", "names no key type: put it in braces"),
        (
            "[[key_rules]]\nregex = '(?P<erp_ordr>SO-\\d+)'",
            "key_rules #1 (regex = \"(?P<erp_ordr>SO-\\d+)\") produces unknown key type 'erp_ordr'",
        ),
        ("[[key_rules]]\nregex = 'SO-\\d+'", "regex 'SO-\\d+' names no key type: a named group says which"),
        (
            "[[key_rules]]\nattribute = 'x'\nkey = 'sku'\nevent_type = 'orders/*'",
            "event_type narrows json_pointer rules only: an event's data is what they read",
        ),
        (
            "[[key_rules]]\nregex = '(?P<erp_order>SO-'",
            "key_rules #1 (regex = \"(?P<erp_order>SO-\"): regex '(?P<erp_order>SO-' is not a valid regular",
        ),
        ("[key_types.ff]\nlabel = 'FF'\npattern = 'FF-(\\d'", "key_types.ff: pattern 'FF-(\\d' is not a valid regular"),
        ("[settings]\nport = 99999", "settings.port: expected 1 to 65535, got 99999"),
        (
            "[settings]\ndb = 'postgresql://root:s3cret@127.0.0.1/syncwatch'",
            "settings.db holds a password; put the URL in SYNCWATCH_DB (the environment), not the file",
        ),
        (
            "[settings]\ndb = 'postgresql://root@127.0.0.1/syncwatch?sslpassword=s3cret'",
            "settings.db holds a password; put the URL in SYNCWATCH_DB (the environment), not the file",
        ),
        (
            "[settings]\ndb = 'postgresql://root:s3cret@[::1/syncwatch'",
            "settings.db is not a usable URL (Invalid IPv6 URL)",
        ),
        ("[settings]\nretention_days = -5", "settings.retention_days: expected 0 to 36500, got -5"),
        (
            "[field_maps.ff]\ntime = '/ts'\nmethod = 'm'\npath = 'p'\nstatus = 's'",
            "field_maps.ff.time: '/ts' is a JSON pointer; a field map takes dotted paths",
        ),
        (
            "[field_maps.ff]\ntime = 5\nmethod = 'm'\npath = 'p'\nstatus = 's'\nbogus = 1",
            "or a list of them, got 5\n",  # and the next problem on a line of its own, not just counted
        ),
        (
            "[field_maps.ff]\ntime = 5\nmethod = 'm'\npath = 'p'\nstatus = 's'\nbogus = 1",
            "syncwatch.toml: field_maps.ff.bogus: unknown field",
        ),
        ("[settings]\nsla_at_risk_share = 80", "settings.sla_at_risk_share: expected 0 to 1, got 80"),
        ("[partners.erp]\nkind = 'erp'\nbase_url = 'http://x'\ntoken_env = 'lower-case'", "partners.erp.token_env"),
        ("[partners.wms]\nkind = 'wms'\nbase_url = 'http://x'\nalternates = ['ghost']", "unknown partners ['ghost']"),
        ("[calendars.x]\ncutoff = '25:00'", "calendars.x.cutoff"),
        ("[calendars.x]\ntimezone = 'America/Chicgo'", "calendars.x.timezone: unknown time zone 'America/Chicgo'"),
        ("[calendars.x]\nholidays = ['26/11/2026']", "calendars.x.holidays #1"),
        ("[webhooks.acme]\nsystem = 'acme'\nid = ['no-slash']\ntype_value = 't'", "webhooks.acme.id: 'no-slash'"),
        (
            "[[tailers]]\npath = 'kong.log'\nformat = 'json_access'\nfield_map = 'bogus'",
            "tailers #1 (kong.log) names field map 'bogus', which is neither built in",
        ),
    ],
)
def test_invalid_values_name_the_field(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    assert fragment in str(caught.value)
    assert str(tmp_path) in str(caught.value)


def test_a_log_level_in_capitals_is_taken() -> None:
    assert load_config(environ={"SYNCWATCH_LOG_LEVEL": "DEBUG"}).log_level == "debug"


def test_an_invalid_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="SYNCWATCH_PORT: expected a whole number, got 'http'"):
        load_config(environ={"SYNCWATCH_PORT": "http"})


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_documented_in_the_readme(setting) -> None:  # type: ignore[no-untyped-def]
    row = next((line for line in README.read_text().splitlines() if line.startswith(f"| `{setting.name}` ")), None)
    assert row is not None, f"README has no row for setting {setting.name}"
    assert f"`{setting.env}`" in row
    assert f"`{setting.default}`" in row


def test_the_built_in_field_maps_the_config_accepts_are_the_collectors_own() -> None:
    from collectors.access_log import FIELD_MAPS
    from syncwatch.config.schema import BUILT_IN_FIELD_MAPS

    assert set(BUILT_IN_FIELD_MAPS) == set(FIELD_MAPS)


def test_the_dashboard_is_told_the_port_it_runs_on(tmp_path: Path) -> None:
    """Admin lists the settings the dashboard loaded; `demo --dashboard-port` and `dashboard --port`
    start it elsewhere than the setting says, so they hand it that port too."""
    args = argparse.Namespace(port=47001, dashboard_port=47002)
    demo = demo_environment(args, f"sqlite:///{tmp_path / 'demo.db'}", Path(write(tmp_path, "")))
    assert load_config(environ=demo).dashboard_port == 47002
    command = dashboard_env(load_config(flags={"dashboard_port": 47003}, environ={}))
    assert load_config(environ=command).dashboard_port == 47003


def test_a_file_with_its_own_partners_keeps_none_of_the_simulated_ones(tmp_path: Path) -> None:
    """The retry policy sent a deployment's exceptions to the demo's partners at 127.0.0.1:8101-8106."""
    path = write(tmp_path, "[partners.acme-3pl]\nkind = '3pl'\nbase_url = 'https://api.acme.example'\n")
    assert set(load_config(path, environ={}).file.partners) == {"acme-3pl"}
    assert "3pl-fastship" in load_config(write(tmp_path, "[users.dana]\nrole = 'lead'\n"), environ={}).file.partners
