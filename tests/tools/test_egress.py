"""The egress allow-list: the cluster's own names always, what the setting adds, nothing else."""

from __future__ import annotations

import pytest

from kubebots.runtime.errors import ConfigurationError
from kubebots.runtime.tools.egress import EgressPolicy

DEFAULT = EgressPolicy.parse(None)


@pytest.mark.parametrize(
    "url",
    [
        "http://weather.tools.svc:8080/x",
        "http://weather.tools.svc.cluster.local/x",
        "https://files-mcp.tools.svc.cluster.local./mcp",
        "http://weather/forecast",
        "http://files-mcp:8000/mcp",
    ],
)
def test_the_cluster_names_are_allowed_by_default(url: str) -> None:
    assert DEFAULT.allows(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.weather.com/v1",
        "http://localhost:8000/admin",
        "http://127.0.0.1:8000/",
        "http://10.0.0.7/",
        "http://[::1]:80/",
        "http://2130706433/",  # 127.0.0.1 spelled as one number: a resolver reads it so
        "http://0x7f.1/",
        "http://weather.tools.svc.evil.com/",
        "ftp://weather.tools.svc/",
        "http:///nohost",
    ],
)
def test_other_hosts_addresses_and_schemes_are_refused_by_default(url: str) -> None:
    assert not DEFAULT.allows(url)


def test_the_setting_adds_names_wildcards_addresses_and_networks() -> None:
    policy = EgressPolicy.parse(" api.weather.com, *.example.com ,10.0.0.0/8,127.0.0.1,::1,")
    assert policy.allows("https://api.weather.com/v1?q=1")
    assert policy.allows("https://a.b.example.com/")
    assert not policy.allows("https://example.com/")  # a wildcard is for names below it
    assert not policy.allows("https://evil-example.com/")
    assert policy.allows("http://10.200.3.4:9000/")
    assert policy.allows("http://127.0.0.1:8000/")
    assert policy.allows("http://2130706433/")  # the same address, any spelling
    assert policy.allows("http://[::1]:8000/")
    assert not policy.allows("http://11.0.0.1/")
    assert policy.allows("http://weather.tools.svc/")  # the cluster's names stay allowed
    assert not policy.allows("http://localhost/")


def test_a_wildcard_never_admits_an_ip_address() -> None:
    policy = EgressPolicy.parse("*.example.com")
    assert not policy.allows("http://127.0.0.1/")


def test_star_allows_anything_http() -> None:
    policy = EgressPolicy.parse("*")
    assert policy.allows("https://anything.example.org/x")
    assert policy.allows("http://169.254.169.254/latest")


def test_a_malformed_entry_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="not a host"):
        EgressPolicy.parse("api.weather.com,not a host")
    with pytest.raises(ValueError, match=r"\*\.\*"):
        EgressPolicy.parse("*.*")


def test_check_names_the_field_and_host_never_the_query() -> None:
    with pytest.raises(ConfigurationError) as caught:
        DEFAULT.check(
            "https://api.weather.com/v1/x?city=secretcity",
            field="tools.http.0.url",
            bot_id="b",
        )
    error = caught.value
    assert error.fields == ["tools.http.0.url"]
    assert "api.weather.com" in error.message and "tools.http.0.url" in error.message
    assert "secretcity" not in str(error.detail) + error.message
    assert "/v1/x" not in error.message
    DEFAULT.check("http://weather.tools.svc/x", field="tools.http.0.url")  # allowed: no error
