"""https for every URL a secret travels to, secrets by reference in process settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kmsync_config import ConfigError, load_settings, parse_tenants
from kmsync_config.cli import main as config_main
from kmsync_config.settings import CommonSettings
from kmsync_ingest.auth import UploadAuth
from kmsync_ingest.settings import IngestSettings


def tenants(service_url: str, user_profile_url: str = "https://user.us.ovp.kaltura.com") -> dict[str, Any]:
    return {
        "marketo_instances": {"acme": {"munchkin_id": "123-ABC-456", "endpoint": "https://123-ABC-456.mktorest.com",
                                       "client_id": "cid", "client_secret": {"env": "SEC_MKTO"}}},
        "kaltura_partners": {1234567: {"service_url": service_url, "user_profile_url": user_profile_url,
                                       "admin_secret": {"env": "SEC_KALTURA"}}},
        "events": [{"name": "q3", "partner_id": 1234567, "virtual_event_id": 1, "marketo_instance": "acme",
                    "program_id": 1001}],
    }


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEC_MKTO", "m-secret")
    monkeypatch.setenv("SEC_KALTURA", "k-secret-value")


@pytest.mark.parametrize("url", ["http://www.kaltura.com", "ftp://www.kaltura.com", "www.kaltura.com",
                                 "https://", "https://user:pw@www.kaltura.com", "http://10.0.0.5:8080"])
def test_kaltura_urls_must_be_https_except_loopback(url: str) -> None:
    for doc in (tenants(url), tenants("https://www.kaltura.com", url)):
        with pytest.raises(ConfigError) as err:
            parse_tenants(doc)
        assert any("the Kaltura URL" in p and "_url" in p for p in err.value.problems), err.value.problems


@pytest.mark.parametrize("url", ["https://www.kaltura.com", "http://127.0.0.1:8123", "http://localhost:9"])
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    assert parse_tenants(tenants(url)).kaltura_partners[1234567].service_url == url


def test_config_check_refuses_an_http_kaltura_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump(tenants("http://www.kaltura.com")))
    assert config_main(["check", str(path)]) == 2  # a configuration error, as in every command
    err = capsys.readouterr().err
    assert "kaltura_partners.1234567.service_url" in err and "https://" in err
    path.write_text(yaml.safe_dump(tenants("https://www.kaltura.com")))
    assert config_main(["check", str(path)]) == 0
    assert config_main(["check", "--tenants", str(path)]) == 0  # the spelling of every other command
    assert f"{path}: 1 event(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        config_main(["check", "--tenants", str(path), str(tmp_path / "other.yaml")])
    assert usage.value.code == 2 and "two tenants files given" in capsys.readouterr().err


def test_polls_url_template_must_be_https_unless_it_starts_with_the_service_url() -> None:
    assert IngestSettings(polls_csv_url="{service_url}/polls/{entry_id}.csv").polls_csv_url
    assert IngestSettings(polls_csv_url="https://reports.example.com/{entry_id}.csv").polls_csv_url
    with pytest.raises(ConfigError) as err:
        load_settings(IngestSettings, polls_csv_url="http://reports.example.com/{entry_id}.csv")
    assert err.value.problems[0].startswith("polls_csv_url:")


def test_email_hash_secret_is_a_reference_never_echoed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KMSYNC_EMAIL_HASH_SECRET", "inline-key-value-0123456789")
    with pytest.raises(ConfigError) as err:
        load_settings(CommonSettings)
    assert "never written inline" in str(err.value) and "inline-key-value" not in str(err.value)
    monkeypatch.setenv("KMSYNC_EMAIL_HASH_SECRET", '{"env": "NOT_SET_ANYWHERE_42"}')
    with pytest.raises(ConfigError) as err:
        load_settings(CommonSettings)
    assert "NOT_SET_ANYWHERE_42 is not set" in str(err.value)
    (tmp_path / "key").write_text("k" * 32)
    monkeypatch.setenv("KMSYNC_EMAIL_HASH_SECRET", f"{{file: {tmp_path / 'key'}}}")
    ref = load_settings(CommonSettings).email_hash_secret
    assert ref is not None and ref.file == tmp_path / "key"


def test_upload_tokens_resolve_by_reference_and_a_file_may_hold_several(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KMSYNC_UPLOAD_TOKENS", "plain-token-value-0123456789")
    with pytest.raises(ConfigError) as err:
        load_settings(IngestSettings)
    assert "plain-token-value" not in str(err.value)
    (tmp_path / "tokens").write_text("token-one-0123456789abc\n\ntoken-two-0123456789abc\n")
    monkeypatch.setenv("TOKEN_A", "token-env-0123456789abc")
    monkeypatch.setenv("KMSYNC_UPLOAD_TOKENS", f'[{{"env": "TOKEN_A"}}, {{"file": "{tmp_path / "tokens"}"}}]')
    auth = UploadAuth.from_settings(load_settings(IngestSettings))
    assert len(auth.digests) == 3 and auth.accepts("Bearer token-two-0123456789abc")
    assert auth.accepts("bearer token-env-0123456789abc") and not auth.accepts("Bearer token-one")
    monkeypatch.setenv("KMSYNC_UPLOAD_TOKENS", '[{"env": "TOKEN_MISSING"}]')
    with pytest.raises(ConfigError) as err:
        UploadAuth.from_settings(load_settings(IngestSettings))
    assert err.value.problems == ["upload_tokens.0: environment variable TOKEN_MISSING is not set or empty"]
    monkeypatch.setenv("TOKEN_A", "short")
    monkeypatch.setenv("KMSYNC_UPLOAD_TOKENS", '{"env": "TOKEN_A"}')
    with pytest.raises(ConfigError, match="shorter than 16"):
        UploadAuth.from_settings(load_settings(IngestSettings))
