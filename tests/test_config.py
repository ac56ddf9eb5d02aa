"""Options: flags over environment over TOML file over defaults."""

from __future__ import annotations

import argparse

import pytest

from lanqueue.config import ConfigError, add_serve_arguments, resolve_options


def parse(argv):
    p = argparse.ArgumentParser()
    add_serve_arguments(p)
    return p.parse_args(argv)


def test_defaults(tmp_path):
    o = resolve_options(parse([]), env={})
    assert (o.host, o.port, o.printer, o.profile, o.baudrate) == ("0.0.0.0", 5000, "virtual", "Generic", 115200)
    assert o.lan == () and o.no_mdns is False


def test_precedence_flag_env_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('port = 6000\nname = "file"\nprofile = "MK3"\nlan = ["A=secret-1"]\nno-mdns = true\n')
    env = {"LANQUEUE_PORT": "7000", "LANQUEUE_NAME": "env"}
    o = resolve_options(parse(["--config", str(cfg), "--port", "8000"]), env=env)
    assert o.port == 8000  # flag
    assert o.name == "env"  # env over file
    assert o.profile == "MK3"  # file over default
    assert o.lan_queues == {"A": "secret-1"} and o.no_mdns is True


def test_repeatable_and_env_lists():
    o = resolve_options(parse(["--lan", "A=secret-x", "--lan", "B=secret-y", "--peer", "h:1"]), env={"LANQUEUE_INTERFACE": "127.0.0.1, 10.0.0.1"})
    assert o.lan_queues == {"A": "secret-x", "B": "secret-y"} and o.peer == ("h:1",)
    assert o.interface == ("127.0.0.1", "10.0.0.1")


@pytest.mark.parametrize("argv,env", [
    (["--port", "0"], {}),
    ([], {"LANQUEUE_PORT": "many"}),
    (["--lan", "noseparator"], {}),
    (["--lan", "local=secret-x"], {}),
    (["--lan", "farm=short"], {}),  # queues/edit refuses secrets under 8 characters; so does serve
    (["--peer", "nohostport"], {}),
    ([], {"LANQUEUE_NO_MDNS": "perhaps"}),
    (["--lease-ttl", "0"], {}),  # the node used to print a traceback at startup and hang
    ([], {"LANQUEUE_LEASE_TTL": "-5"}),
    (["--lease-ttl", "nan"], {}),
    (["--lock-delay", "-1"], {}),
    (["--virtual-speed", "nan"], {}),
])
def test_bad_values_are_config_errors(argv, env):
    with pytest.raises(ConfigError):
        resolve_options(parse(argv), env=env)


def test_unknown_file_keys_are_reported(tmp_path, caplog):
    cfg = tmp_path / "c.toml"
    cfg.write_text("prot = 1\n")
    resolve_options(parse(["--config", str(cfg)]), env={})
    assert "prot" in caplog.text


def test_unreadable_config_is_a_config_error(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("port = = 1")
    with pytest.raises(ConfigError):
        resolve_options(parse(["--config", str(cfg)]), env={})


def test_every_option_is_declared_once_with_its_default_in_options():
    """OPTIONS says how an option is given; `Options` holds its one default (issue 16: the
    defaults were written twice and could differ)."""
    from dataclasses import fields as dc_fields

    from lanqueue.config import OPTIONS, Options

    assert [o.name for o in OPTIONS] == [f.name for f in dc_fields(Options)]
    resolved = resolve_options(None, env={})
    for opt in OPTIONS:
        if opt.name not in ("data_dir", "name"):  # computed at start
            assert getattr(resolved, opt.name) == getattr(Options(), opt.name), opt.name
