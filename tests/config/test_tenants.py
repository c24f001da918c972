"""The tenants file: https and suffix rules, secrets by reference, unknown keys, cross-references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kmsync_config import ConfigError, load_tenants, parse_tenants
from kmsync_config.settings import CommonSettings, load_settings


def valid() -> dict[str, Any]:
    return {
        "marketo_instances": {
            "acme": {
                "munchkin_id": "123-abc-456",
                "endpoint": "https://123-ABC-456.mktorest.com/",
                "client_id": "cid",
                "client_secret": {"env": "TEST_MKTO_SECRET"},
                "share": 0.5,
            }
        },
        "kaltura_partners": {
            1234567: {
                "service_url": "https://www.kaltura.com",
                "user_profile_url": "https://user.us.ovp.kaltura.com",
                "admin_secret": {"env": "TEST_KALTURA_SECRET"},
            }
        },
        "events": [
            {"name": "q3", "partner_id": 1234567, "virtual_event_id": 98765, "marketo_instance": "acme",
             "program_id": 1001, "status_overrides": {"invitedPendingRegistration": "Invited"}}
        ],
    }


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_MKTO_SECRET", "s3cr3t-value")
    monkeypatch.setenv("TEST_KALTURA_SECRET", "k-secret")


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_tenants(data)
    return err.value.problems


def test_a_valid_file_loads_and_normalises(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump(valid()))
    cfg = load_tenants(path)
    inst = cfg.marketo_instances["acme"]
    assert inst.munchkin_id == "123-ABC-456"
    assert inst.endpoint == "https://123-ABC-456.mktorest.com"
    assert inst.client_secret.resolve().get_secret_value() == "s3cr3t-value"
    ev = cfg.event(1234567, 98765)
    assert ev is not None and cfg.instance_for(ev) is inst
    assert cfg.instance_by_munchkin("123-abc-456") == ("acme", inst)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://123-ABC-456.mktorest.com", "must start with https://"),
        ("123-ABC-456.mktorest.com", "must start with https://"),
        ("https://123-ABC-456.mktorest.com/rest", "give the base URL"),
        ("https://123-ABC-456.mktorest.com/rest/v1", "give the base URL"),  # issue #20 item 5
        ("https://123-ABC-456.mktorest.com/identity/", "give the base URL"),
        ("https://123-ABC-456.mktorest.com/identity/oauth/token", "give the base URL"),
    ],
)
def test_endpoint_rules_from_the_seed(endpoint: str, expected: str) -> None:
    data = valid()
    data["marketo_instances"]["acme"]["endpoint"] = endpoint
    [problem] = problems_of(data)
    assert problem.startswith("marketo_instances.acme.endpoint:")
    assert expected in problem
    assert problem.count(repr(endpoint)) == 1, problem  # the value, once


def test_an_endpoint_with_the_api_path_names_the_base_url_to_give() -> None:
    data = valid()
    data["marketo_instances"]["acme"]["endpoint"] = "https://123-ABC-456.mktorest.com/rest/v1"
    [problem] = problems_of(data)
    assert problem == ("marketo_instances.acme.endpoint: give the base URL of the REST API endpoint, without "
                       "/rest/...: use 'https://123-ABC-456.mktorest.com' "
                       "(got 'https://123-ABC-456.mktorest.com/rest/v1')")


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("munchkin_id", "nope", "a Munchkin id looks like 123-ABC-456"),
    ("share", 2, "Input should be less than or equal to 1"),
    ("endpoint", "http://123-ABC-456.mktorest.com", "the Marketo endpoint must start with https://, not http://"),
])
def test_each_message_says_the_field_the_problem_and_the_value_once(field: str, value: object,
                                                                    problem: str) -> None:
    # Issue #20 item 5: "Value error, ... got 'nope' (got 'nope')".
    data = valid()
    data["marketo_instances"]["acme"][field] = value
    [message] = problems_of(data)
    assert message.startswith(f"marketo_instances.acme.{field}: {problem}"), message
    assert message.endswith(f"(got {value!r})"), message
    assert message.count(repr(value)) == 1, message
    assert "Value error" not in message and "got" not in message.removesuffix(f"(got {value!r})"), message


def test_a_loopback_sandbox_may_use_http() -> None:
    data = valid()
    data["marketo_instances"]["acme"]["endpoint"] = "http://127.0.0.1:8123"
    assert parse_tenants(data).marketo_instances["acme"].endpoint == "http://127.0.0.1:8123"


def test_inline_secrets_are_refused_and_never_echoed() -> None:
    data = valid()
    data["marketo_instances"]["acme"]["client_secret"] = "hunter2-inline"
    [problem] = problems_of(data)
    assert "never written inline" in problem
    assert "hunter2-inline" not in problem


def test_secret_refs_must_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_MKTO_SECRET")
    data = valid()
    data["kaltura_partners"][1234567]["admin_secret"] = {"file": str(tmp_path / "missing")}
    problems = problems_of(data)
    assert any("TEST_MKTO_SECRET is not set" in p for p in problems)
    assert any("cannot read secret file" in p for p in problems)
    secret_file = tmp_path / "k"
    secret_file.write_text("from-file\n")
    data["kaltura_partners"][1234567]["admin_secret"] = {"file": str(secret_file)}
    monkeypatch.setenv("TEST_MKTO_SECRET", "x")
    cfg = parse_tenants(data)
    assert cfg.kaltura_partners[1234567].admin_secret.resolve().get_secret_value() == "from-file"


def test_secret_repr_hides_the_value() -> None:
    cfg = parse_tenants(valid())
    secret = cfg.marketo_instances["acme"].client_secret.resolve()
    assert "s3cr3t-value" not in repr(secret) and "s3cr3t-value" not in str(secret)


def test_every_problem_is_listed_at_once() -> None:
    data = valid()
    data["marketo_instances"]["acme"]["shaer"] = 0.4  # typo: unknown key
    data["marketo_instances"]["acme"]["munchkin_id"] = "acme"
    data["events"][0]["program_id"] = 0
    data["events"][0]["status_overrides"] = {"attended": "Went"}
    problems = problems_of(data)
    joined = "\n".join(problems)
    assert "marketo_instances.acme.shaer: Extra inputs are not permitted" in joined
    assert "Munchkin id looks like 123-ABC-456" in joined
    assert "events.0.program_id" in joined
    assert "not a channel status" in joined
    assert len(problems) == 4


def test_an_event_pointing_at_an_undefined_instance() -> None:
    data = valid()
    data["events"][0]["marketo_instance"] = "globex"
    data["events"].append(dict(data["events"][0]))
    problems = problems_of(data)
    assert "events.0.marketo_instance: 'globex' is not defined in marketo_instances (defined: acme)" in problems
    assert any("listed twice" in p for p in problems)


def test_legacy_mode_means_activities_only() -> None:
    data = valid()
    data["events"][0]["outputs"] = {"legacy_activities_only": True}
    assert any("set custom_objects: false" in p for p in problems_of(data))
    data["events"][0]["outputs"] = {"legacy_activities_only": True, "custom_objects": False}
    assert parse_tenants(data).events[0].outputs.legacy_activities_only


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("marketo_instances:\n  acme: [unclosed\nevents: []\n")
    with pytest.raises(ConfigError, match="line 3"):
        load_tenants(path)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMSYNC_TOPIC_PREFIX", "dev.")
    monkeypatch.setenv("KMSYNC_HTTP_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="http_port"):
        load_settings(CommonSettings)
    monkeypatch.setenv("KMSYNC_HTTP_PORT", "9100")
    settings = load_settings(CommonSettings)
    assert (settings.topic_prefix, settings.http_port) == ("dev.", 9100)


def test_instance_rate_limit_and_bulk_threshold_default_to_marketo_and_the_sink() -> None:
    inst = parse_tenants(valid()).marketo_instances["acme"]
    # docs/reference/marketo-api.md §2.1: 100 calls per 20 s for every subscription; bulk follows the sink setting.
    assert (inst.rate_limit_calls, inst.bulk_min_records) == (100, None)
    data = valid()
    data["marketo_instances"]["acme"].update({"rate_limit_calls": 1000, "bulk_min_records": 0})
    inst = parse_tenants(data).marketo_instances["acme"]
    assert (inst.rate_limit_calls, inst.bulk_min_records) == (1000, 0), "0: never bulk for this instance"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("rate_limit_calls", 0, "marketo_instances.acme.rate_limit_calls: Input should be greater than or equal to 1"),
        ("rate_limit_calls", True, "marketo_instances.acme.rate_limit_calls: Input should be a valid integer"),
        ("rate_limit_calls", "lots", "marketo_instances.acme.rate_limit_calls: Input should be a valid integer"),
        ("bulk_min_records", -1, "marketo_instances.acme.bulk_min_records: Input should be greater than or equal to 0"),
        ("bulk_min_records", False, "marketo_instances.acme.bulk_min_records: Input should be a valid integer"),
    ],
)
def test_instance_rate_limit_and_bulk_threshold_are_validated(field: str, value: object, expected: str) -> None:
    data = valid()
    data["marketo_instances"]["acme"][field] = value
    [problem] = problems_of(data)
    assert problem.startswith(expected), problem
