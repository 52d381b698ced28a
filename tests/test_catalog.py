"""The GPU/instance catalog against EC2's own data (as moto ships it) and against itself."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from servekit.catalog import default_catalog, load_catalog
from servekit.errors import UserError

CAT = default_catalog()


@pytest.fixture(scope="module")
def ec2_types() -> dict[str, dict]:
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        resp = ec2.describe_instance_types(InstanceTypes=sorted(CAT.instances))
        return {t["InstanceType"]: t for t in resp["InstanceTypes"]}


@pytest.mark.parametrize("itype", sorted(CAT.instances))
def test_instance_matches_ec2_data(itype: str, ec2_types: dict[str, dict]) -> None:
    ours = CAT.instances[itype]
    theirs = ec2_types[itype]
    gpu = theirs["GpuInfo"]["Gpus"][0]
    assert ours.gpus == gpu["Count"]
    assert CAT.gpus[ours.gpu].memory_mib == gpu["MemoryInfo"]["SizeInMiB"]
    assert ours.vcpu == theirs["VCpuInfo"]["DefaultVCpus"]
    assert ours.memory_gib * 1024 == theirs["MemoryInfo"]["SizeInMiB"]


def test_every_price_is_dated_and_sourced() -> None:
    for i in CAT.instances.values():
        assert i.sources and i.price_date.year >= 2026
        if i.on_demand_usd_per_hour is None:
            assert i.capacity_block, f"{i.type}: no on-demand price but not Capacity Block eligible"
    for g in CAT.gpus.values():
        assert g.sources


def test_per_gpu_prices_from_reference() -> None:
    # sizing-and-cost-facts.md §7 per-GPU-hour anchors (OD, 2026-07-20), derived independently.
    per_gpu = {t: i.on_demand_usd_per_hour / i.gpus for t, i in CAT.instances.items() if i.on_demand_usd_per_hour}
    assert per_gpu["p4de.24xlarge"] == pytest.approx(3.431, abs=0.001)
    assert per_gpu["p5.48xlarge"] == pytest.approx(6.88)
    assert per_gpu["p5en.48xlarge"] == pytest.approx(7.912, abs=0.001)
    assert per_gpu["g6e.48xlarge"] == pytest.approx(3.766, abs=0.001)


def test_broken_model_file_names_file_and_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = (CAT.model_files["qwen2.5-7b-instruct"]).read_text()
    (tmp_path / "qwen2.5-7b-instruct.yaml").write_text(src.replace("numKeyValueHeads: 4", "numKeyValueHeads: four"))
    with pytest.raises(UserError) as e:
        load_catalog(models_dir=tmp_path)
    msg = str(e.value)
    assert "qwen2.5-7b-instruct.yaml" in msg and "architecture.numKeyValueHeads" in msg and "four" in msg


def test_unknown_key_in_model_file_is_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = (CAT.model_files["qwen3-8b"]).read_text()
    (tmp_path / "qwen3-8b.yaml").write_text(src + "\nparamz: 8\n")
    with pytest.raises(UserError, match=r"qwen3-8b.yaml: paramz: unknown key"):
        load_catalog(models_dir=tmp_path)
