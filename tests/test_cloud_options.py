"""The broker's options are declared once (`LocalOptions`) and carried whole: to `LocalCloud`,
to the broker's settings, and through a command line to the background service."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit import errors
from kit.cli import build_parser
from kit.cloud import local, options
from kit.cloud import service as cloud_service
from kit.cloud.broker import BrokerSettings
from kit.cloud.options import LocalOptions

# A value other than the default for every field. A field added to LocalOptions fails
# test_every_field_has_a_value_here until it is added here, and then every test below
# carries it.
NON_DEFAULT = {
    "host": "0.0.0.0",
    "port": 18883,
    "ws_port": 18884,
    "broker_host": "classroom.lan",
    "keep_days": 2.5,
    "connect_timeout": 1.25,
    "session_expiry": 7.5,
    "recorder_queue": 10,
}
OTHER = LocalOptions(**NON_DEFAULT)


def service_reads(command_line: list[str]) -> LocalOptions:
    """The options the service's own argument parser makes of a command line."""
    return options.from_arguments(cloud_service.argument_parser().parse_args(command_line))


def test_every_field_has_a_value_here() -> None:
    names = [field.name for field in dataclasses.fields(LocalOptions)]
    assert sorted(NON_DEFAULT) == sorted(names)
    default = LocalOptions()
    assert [n for n in names if getattr(OTHER, n) == getattr(default, n)] == []


def test_every_field_has_its_flag() -> None:
    for field in dataclasses.fields(LocalOptions):
        assert {"parse", "help", "people"} <= set(field.metadata), field.name
        assert options.option_flag(field) in OTHER.command_line(), field.name


@pytest.mark.parametrize("sent", [LocalOptions(), OTHER], ids=["defaults", "non-default"])
def test_every_option_survives_the_trip_to_the_service(sent: LocalOptions) -> None:
    assert service_reads(sent.command_line()) == sent


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_each_option_alone_survives_the_trip(name: str) -> None:
    sent = LocalOptions(**{name: NON_DEFAULT[name]})
    assert service_reads(sent.command_line()) == sent


def test_the_service_entry_point_runs_with_the_options_sent(monkeypatch) -> None:
    ran: list[LocalOptions] = []
    monkeypatch.setattr(cloud_service, "run_service", ran.append)
    assert cloud_service.main(OTHER.command_line()) == 0
    assert ran == [OTHER]


def test_the_spawned_command_is_the_options_command_line(monkeypatch) -> None:
    commands: list[list[str]] = []

    def launch(managed, command, timeout, failure) -> None:
        commands.append(command)

    monkeypatch.setattr(cloud_service, "check_ports_free", lambda host, ports: None)
    monkeypatch.setattr(cloud_service.background, "launch", launch)
    with pytest.raises(errors.CloudError, match="no usable state"):
        cloud_service._spawn_service(OTHER, 1.0)
    (command,) = commands
    assert command[1:3] == ["-m", "kit.cloud.service"]
    assert service_reads(command[3:]) == OTHER


@given(
    keep_days=st.floats(min_value=1e-6, max_value=99_999, allow_subnormal=False),
    connect_timeout=st.floats(min_value=1e-6, max_value=86_399, allow_subnormal=False),
    session_expiry=st.floats(min_value=1e-6, max_value=3e7, allow_subnormal=False),
    recorder_queue=st.integers(min_value=1, max_value=999_999_999),
    port=st.integers(min_value=0, max_value=65535),
)
def test_numbers_survive_the_trip_exactly(**numbers: Any) -> None:
    sent = LocalOptions(**numbers)
    assert service_reads(sent.command_line()) == sent


def test_kit_cloud_up_leaves_the_services_tuning_at_its_defaults() -> None:
    parsed = build_parser().parse_args(["cloud", "up"])
    assert options.from_arguments(parsed) == LocalOptions()
    listening = build_parser().parse_args(["cloud", "up", "--listen", "--port", "0"])
    assert options.from_arguments(listening) == LocalOptions(host="0.0.0.0", port=0)


def test_an_empty_broker_name_is_no_name() -> None:
    assert LocalOptions(broker_host="") == LocalOptions()
    assert "--broker-host" not in LocalOptions(broker_host="").command_line()


def test_local_cloud_takes_the_options_whole_or_by_field() -> None:
    assert local.LocalCloud(options=OTHER).options == OTHER
    assert local.LocalCloud(**NON_DEFAULT).options == OTHER
    assert local.LocalCloud().options == LocalOptions()
    changed = local.LocalCloud(options=OTHER, port=0).options
    assert changed == dataclasses.replace(OTHER, port=0)
    with pytest.raises(TypeError):
        local.LocalCloud(prot=0)


def test_the_broker_settings_carry_every_option(tmp_path: Path) -> None:
    files = {name: tmp_path / name for name in ("ca_file", "cert_file", "key_file", "database")}
    settings = BrokerSettings.of(OTHER, **files)
    for field in dataclasses.fields(LocalOptions):
        assert getattr(settings, field.name) == getattr(OTHER, field.name), field.name
    assert settings.database == tmp_path / "database"
