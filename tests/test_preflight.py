"""Preflight against moto in server mode on 127.0.0.1, plus botocore Stubbers for the calls moto lacks.

moto 5.2 answers sts GetCallerIdentity, ec2 DescribeRegions and DescribeInstanceTypeOfferings (its
offering data: p4de.24xlarge only in us-east-1b and us-east-1c - reference/verified-here.md). It does
not implement Service Quotas for ec2, DescribeCapacityReservations, DescribeCapacityBlockOfferings or
eks DescribeClusterVersions, so those are answered by botocore's Stubber, which validates every canned
response against the service model's output shape. Expected numbers are worked out by hand from the
reference (p4de.24xlarge has 96 vCPUs, g6.xlarge 4, m7i.large 2) in the comments next to them.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from servekit.cli import app
from servekit.cli import preflight as cli_preflight
from servekit.cli._common import run_app
from servekit.cli.plan import STACKS_DIR_ENV
from servekit.errors import EnvironmentMissing
from servekit.preflight import (
    SYSTEM_NODES_MAX,
    Clients,
    block_hours_for,
    check_capacity_block_offerings,
    check_eks_version,
    check_identity,
    check_offerings,
    check_quotas,
    check_region,
    check_reservations,
    make_clients,
    quota_needs,
    refresh_prices,
)
from servekit.stackfile import ResolvedStack, resolve_stack

REGION = "us-east-1"
TODAY = date(2026, 11, 27)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_url: str) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    return moto_url


def _stack(tmp_path: Path, name: str, models: list[dict[str, Any]], az_count: int = 3) -> ResolvedStack:
    cfg = {"config": {
        "aws:region": REGION,
        "servekit:environment": "prod",
        "servekit:tags": {"owner": "t@example.com", "costCenter": "cc-1", "dataClassification": "internal"},
        "servekit:network": {"azCount": az_count, "egress": "nat"},
        "servekit:cluster": {"version": "1.34"},
        "servekit:models": models,
    }}
    (tmp_path / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(cfg))
    return resolve_stack(name, stacks_dir=tmp_path)


P4DE = {"name": "big", "model": "llama-3.1-70b-instruct", "instanceType": "p4de.24xlarge", "tensorParallelSize": 2,
        "replicas": 2, "kvCacheDtype": "fp8",
        "sla": {"p95E2eSeconds": 30, "concurrencyPerReplica": 8, "workload": "extraction"}}


def _client(name: str, url: str) -> Any:
    return boto3.client(name, region_name=REGION, endpoint_url=url)


def _quota(code: str, value: float) -> dict[str, Any]:
    return {"Quota": {"ServiceCode": "ec2", "QuotaCode": code, "QuotaName": code, "Value": value, "Unit": "None",
                      "Adjustable": True, "GlobalQuota": False}}


# --------------------------------------------------------------------------- moto server


def test_clients_honour_aws_endpoint_url_and_identity_comes_from_moto(aws_env: str) -> None:
    clients = make_clients(REGION)
    assert clients.sts.meta.endpoint_url == aws_env
    check, account = check_identity(clients.sts)
    assert account == "123456789012"  # moto's default account
    assert check.status == "pass"


def test_region_enabled_and_not_opted_in(aws_env: str) -> None:
    ec2 = _client("ec2", aws_env)
    assert check_region(ec2, "us-east-1").status == "pass"
    # ap-east-1 is an opt-in region; moto reports it not opted in
    bad = check_region(ec2, "ap-east-1")
    assert bad.status == "fail" and "not enabled" in bad.message


def test_offerings_in_the_vpc_azs(aws_env: str, tmp_path: Path) -> None:
    ec2 = _client("ec2", aws_env)
    three = _stack(tmp_path, "three", [P4DE], az_count=3)  # VPC spans us-east-1a/b/c
    [c] = check_offerings(ec2, three.spec, three.placements)
    assert c.status == "pass" and c.message == "offered in us-east-1b, us-east-1c"
    two = _stack(tmp_path, "two", [P4DE], az_count=2)  # us-east-1a/b: only b offers p4de, 2 nodes want to spread
    [w] = check_offerings(ec2, two.spec, two.placements)
    assert w.status == "warn" and "only in us-east-1b" in w.message
    odcr = {**P4DE, "spreadAcrossZones": False,
            "purchase": {"option": "odcr", "reservationId": "cr-0123456789abcdef0", "availabilityZone": "us-east-1a"}}
    wrong_az = _stack(tmp_path, "odcr", [odcr], az_count=3)
    [f] = check_offerings(ec2, wrong_az.spec, wrong_az.placements)
    assert f.status == "fail" and "not offered in the reservation's AZ us-east-1a" in f.message


# --------------------------------------------------------------------------- quotas (Stubber)


def test_quota_needs_count_whole_nodes_per_bucket(tmp_path: Path) -> None:
    spot = {"name": "small", "model": "qwen2.5-7b-instruct", "quantization": "awq", "instanceType": "g6.xlarge",
            "replicas": 3, "purchase": {"option": "spot", "onDemandFloor": 1},
            "sla": {"p95E2eSeconds": 30, "concurrencyPerReplica": 4}}
    s = _stack(tmp_path, "mix", [P4DE, spot])
    needs = {(n.code, n.spot): n.vcpus for n in quota_needs(s.spec, s.placements)}
    assert needs == {
        ("L-DB2E81BA", False): 4,  # g6.xlarge on-demand floor: 1 node x 4 vCPUs
        ("L-3819A6DF", True): 8,  # 2 spot g6.xlarge x 4 vCPUs
        ("L-417A185B", False): 192,  # 2 x p4de.24xlarge x 96 vCPUs
        ("L-1216C47A", False): 6,  # up to 3 system m7i.large x 2 vCPUs
    }


def test_system_node_maximum_matches_the_cluster_component() -> None:
    from components import cluster

    assert cluster.SYSTEM_NODES[2] == SYSTEM_NODES_MAX


def test_quota_shortfall_names_code_and_amount(aws_env: str, tmp_path: Path) -> None:
    s = _stack(tmp_path, "q", [P4DE])
    quotas = _client("service-quotas", aws_env)
    with Stubber(quotas) as st:
        st.add_response("get_service_quota", _quota("L-417A185B", 96.0),
                        {"ServiceCode": "ec2", "QuotaCode": "L-417A185B"})
        # no applied value for the standard quota: preflight falls back to the AWS default
        st.add_client_error("get_service_quota", service_error_code="NoSuchResourceException",
                            expected_params={"ServiceCode": "ec2", "QuotaCode": "L-1216C47A"})
        st.add_response("get_aws_default_service_quota", _quota("L-1216C47A", 8.0),
                        {"ServiceCode": "ec2", "QuotaCode": "L-1216C47A"})
        checks = check_quotas(quotas, s.spec, s.placements)
        st.assert_no_pending_responses()
    p, std = checks
    assert p.status == "fail"
    assert "L-417A185B" in p.message and "is 96 (applied)" in p.message and "at least 192" in p.message
    assert "--desired-value 192" in p.message
    assert std.status == "pass" and "(AWS default)" in std.message


# --------------------------------------------------------------------------- reservations (Stubber)


def _reservation(**over: Any) -> dict[str, Any]:
    cr = {"CapacityReservationId": "cr-0123456789abcdef0", "InstanceType": "p4de.24xlarge",
          "InstancePlatform": "Linux/UNIX", "AvailabilityZone": "us-east-1b", "TotalInstanceCount": 2,
          "AvailableInstanceCount": 2, "State": "active", "EndDateType": "unlimited",
          "ReservationType": "default"}
    cr.update(over)
    return {"CapacityReservations": [cr]}


# TP 8: one replica fills a p4de.24xlarge, so 2 replicas need 2 nodes in the reservation's AZ
ODCR = {**P4DE, "spreadAcrossZones": False, "tensorParallelSize": 8,
        "purchase": {"option": "odcr", "reservationId": "cr-0123456789abcdef0", "availabilityZone": "us-east-1b"}}


@pytest.mark.parametrize(("over", "expect"), [
    ({}, None),
    ({"State": "expired"}, "state is expired"),
    ({"AvailabilityZone": "us-east-1c"}, "it is in us-east-1c, the stack says us-east-1b"),
    ({"InstanceType": "p4d.24xlarge"}, "it reserves p4d.24xlarge"),
    ({"TotalInstanceCount": 1}, "it holds 1 instances, the model needs up to 2"),
    ({"EndDateType": "limited", "EndDate": datetime(2026, 12, 10, tzinfo=UTC)}, "ends 2026-12-10, inside"),
])
def test_odcr_checks(tmp_path: Path, over: dict[str, Any], expect: str | None) -> None:
    s = _stack(tmp_path, "odcr", [ODCR])
    ec2 = boto3.client("ec2", region_name=REGION)
    with Stubber(ec2) as st:
        st.add_response("describe_capacity_reservations", _reservation(**over),
                        {"CapacityReservationIds": ["cr-0123456789abcdef0"]})
        [c] = check_reservations(ec2, s.spec, s.placements, today=TODAY)
    if expect is None:
        assert c.status == "pass"
    else:
        assert c.status == "fail" and expect in c.message


def test_missing_reservation_and_capacity_block_window(tmp_path: Path) -> None:
    s = _stack(tmp_path, "odcr", [ODCR])
    ec2 = boto3.client("ec2", region_name=REGION)
    with Stubber(ec2) as st:
        st.add_client_error("describe_capacity_reservations",
                            service_error_code="InvalidCapacityReservationId.NotFound")
        [c] = check_reservations(ec2, s.spec, s.placements, today=TODAY)
    assert c.status == "fail" and "does not exist" in c.message
    # a far-future end date: stackfile's purchase rules refuse a block that has already ended (wall clock)
    block = {**P4DE, "spreadAcrossZones": False,
             "purchase": {"option": "capacity-block", "reservationId": "cr-0123456789abcdef0",
                          "availabilityZone": "us-east-1b", "endDate": "2099-12-20"}}
    b = _stack(tmp_path, "cb", [block])
    with Stubber(ec2) as st:
        # a scheduled block that ends two days before the stack's endDate
        st.add_response("describe_capacity_reservations",
                        _reservation(State="scheduled", ReservationType="capacity-block", EndDateType="limited",
                                     EndDate=datetime(2099, 12, 18, 11, 30, tzinfo=UTC)))
        [c] = check_reservations(ec2, b.spec, b.placements, today=TODAY)
    assert c.status == "fail" and "ends 2099-12-18, inside the stack's window (to 2099-12-20)" in c.message


def test_capacity_block_offerings(tmp_path: Path) -> None:
    s = _stack(tmp_path, "cbo", [P4DE])
    ec2 = boto3.client("ec2", region_name=REGION)
    offer = {"CapacityBlockOfferingId": "cb-0123456789abcdef0", "InstanceType": "p4de.24xlarge",
             "AvailabilityZone": "us-east-1c", "InstanceCount": 2,
             "StartDate": datetime(2026, 12, 1, 11, 30, tzinfo=UTC),
             "EndDate": datetime(2026, 12, 2, 11, 30, tzinfo=UTC), "CapacityBlockDurationHours": 24,
             "UpfrontFee": "960.00", "CurrencyCode": "USD", "Tenancy": "default"}
    with Stubber(ec2) as st:
        st.add_response("describe_capacity_block_offerings", {"CapacityBlockOfferings": [offer]},
                        {"InstanceType": "p4de.24xlarge", "InstanceCount": 2, "CapacityDurationHours": 24})
        [c] = check_capacity_block_offerings(ec2, s.spec, s.placements, hours=24)
    # $960 for 2 instances x 24 h = $20.00 per instance-hour
    assert c.status == "pass" and "$20.00 per instance-hour" in c.message
    with Stubber(ec2) as st:
        st.add_response("describe_capacity_block_offerings",
                        {"CapacityBlockOfferings": [{**offer, "AvailabilityZone": "us-east-1d"}]})
        [c] = check_capacity_block_offerings(ec2, s.spec, s.placements, hours=24)
    assert c.status == "fail" and "offered in us-east-1d" in c.message


@pytest.mark.parametrize(("status", "expect"), [
    ("STANDARD_SUPPORT", "pass"), ("EXTENDED_SUPPORT", "warn"), ("UNSUPPORTED", "fail"), (None, "fail"),
])
def test_eks_version(status: str | None, expect: str) -> None:
    eks = boto3.client("eks", region_name=REGION)
    versions = [] if status is None else [{"clusterVersion": "1.34", "versionStatus": status}]
    with Stubber(eks) as st:
        st.add_response("describe_cluster_versions", {"clusterVersions": versions}, {"clusterVersions": ["1.34"]})
        assert check_eks_version(eks, "1.34").status == expect


# --------------------------------------------------------------------------- the command


def test_cli_quota_shortfall_exits_1_with_one_message(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    _stack(tmp_path, "short", [P4DE])
    monkeypatch.setenv(STACKS_DIR_ENV, str(tmp_path))
    quotas, eks = _client("service-quotas", aws_env), _client("eks", aws_env)
    real = make_clients(REGION)  # sts and ec2 answered by moto over HTTP
    monkeypatch.setattr(cli_preflight, "make_clients",
                        lambda region: Clients(sts=real.sts, ec2=real.ec2, quotas=quotas, eks=eks))
    with Stubber(quotas) as qs, Stubber(eks) as es:
        qs.add_response("get_service_quota", _quota("L-417A185B", 96.0))
        qs.add_response("get_service_quota", _quota("L-1216C47A", 640.0))
        es.add_response("describe_cluster_versions",
                        {"clusterVersions": [{"clusterVersion": "1.34", "versionStatus": "STANDARD_SUPPORT"}]})
        code = run_app(app, ["preflight", "--stack", "short"])
    assert code == 1
    err = capsys.readouterr().err
    failing = [line for line in err.splitlines() if line.strip()]
    assert len(failing) == 1, err  # exactly one failing check -> one message
    assert "L-417A185B" in failing[0] and "at least 192" in failing[0]


def test_cli_without_credentials_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with pytest.raises(EnvironmentMissing):
        make_clients(REGION)
    _stack(tmp_path, "nocreds", [P4DE])
    monkeypatch.setenv(STACKS_DIR_ENV, str(tmp_path))
    assert run_app(app, ["preflight", "--stack", "nocreds"]) == 3
    assert "no AWS credentials found" in capsys.readouterr().err


# ------------------------------------------------------------ live prices (Stubber: moto has no Pricing API)


def _price_list(itype: str, usd: str) -> str:
    """One product as the Price List API returns it: a JSON string per SKU."""
    return json.dumps({
        "product": {"sku": "ABC", "attributes": {"instanceType": itype, "regionCode": REGION}},
        "terms": {"OnDemand": {"ABC.JRTCKXETXF": {"priceDimensions": {"ABC.JRTCKXETXF.6YS6EN2CT7": {
            "unit": "Hrs", "pricePerUnit": {"USD": usd}, "description": f"${usd} per On Demand Linux {itype}"}}}}},
    })


def test_refresh_prices_writes_a_dated_file_and_flags_drift(tmp_path: Path) -> None:
    s = _stack(tmp_path, "p", [P4DE])
    pricing = boto3.client("pricing", region_name="us-east-1")
    out = tmp_path / "prices-live.yaml"
    with Stubber(pricing) as st:
        # 10% above the kit's $27.44705/h -> a warning
        st.add_response("get_products", {"PriceList": [_price_list("p4de.24xlarge", "30.1917550000")],
                                         "FormatVersion": "aws_v1"})
        [c] = refresh_prices(pricing, s.spec, s.placements, out, today=TODAY)
    assert c.status == "warn" and "+10.0%" in c.message
    written = yaml.safe_load(out.read_text())
    assert written["source"]["retrieved"] == "2026-11-27"
    assert written["onDemandUsdPerHour"] == {"p4de.24xlarge": pytest.approx(30.191755)}


@pytest.mark.parametrize(("days", "hours"), [(1, 24), (14, 336), (21, 504), (182, 4368), (0, None), (-7, None),
                                             (15, None), (189, None)])
def test_block_days_are_capacity_block_durations(days: int, hours: int | None) -> None:
    # 1-14 days, or a whole number of weeks up to 26 (182 days); 0 and -7 are multiples of 7 but no duration.
    if hours is None:
        with pytest.raises(ValueError, match="not a Capacity Block duration"):
            block_hours_for(days)
    else:
        assert block_hours_for(days) == hours


def test_cli_block_days_zero_is_exit_2_before_credentials(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    assert run_app(app, ["preflight", "--stack", "dev", "--block-days", "0"]) == 2
    assert "--block-days: 0 days is not a Capacity Block duration" in capsys.readouterr().err
