"""The GPU vocabulary: `gpu_matches` (bare families take every variant, exact names only themselves)
and the RTX PRO 6000 names, with the existing mappings unchanged."""

from __future__ import annotations

import pytest

from spotplan.gpus import VOCABULARY, gpu_family, gpu_matches, normalize_gpu_model


@pytest.mark.parametrize(
    ("wanted", "model", "expected"),
    [
        ("A100", "A100-40GB", True),
        ("A100", "A100-80GB", True),
        ("a100", "A100-80GB", True),
        (" A100 ", "A100-40GB", True),
        ("A100-80GB", "A100-80GB", True),
        ("A100-80GB", "A100-40GB", False),
        ("a100-40gb", "A100-80GB", False),
        ("V100", "V100", True),
        ("V100", "V100-32GB", True),
        ("V100-32GB", "V100", False),
        ("H100", "H100", True),
        ("H100", "H200", False),
        ("T4", "T4G", False),  # a different chip, not a variant
        ("A10", "A10G", False),
        ("Inferentia", "Inferentia2", False),
        ("nvidia-tesla-a100", "A100-40GB", True),  # a provider's spelling is one exact model
        ("nvidia-tesla-a100", "A100-80GB", False),
        ("NVIDIA H100", "H100", True),
        ("nvidia-rtx-pro-6000", "RTX-PRO-6000", True),
        ("A100", "", False),
        (None, "A100-40GB", True),
        ("", "L4", True),
    ],
)
def test_gpu_matches(wanted: str | None, model: str, expected: bool) -> None:
    assert gpu_matches(wanted, model) is expected


def test_families() -> None:
    assert gpu_family("A100-80GB") == "A100"
    assert gpu_family("V100-32GB") == "V100"
    assert gpu_family("RTX-PRO-6000") == "RTX-PRO-6000"
    families = {gpu_family(v) for v in VOCABULARY}
    assert {v for v in VOCABULARY if gpu_family(v) == "A100"} == {"A100-40GB", "A100-80GB"}
    assert len(families) == len(VOCABULARY) - 2  # only A100 (two sizes) and V100 (+32GB) have variants


@pytest.mark.parametrize(
    "name",
    ["nvidia-rtx-pro-6000", "rtx6000", "RTX PRO 6000", "NVIDIA RTX PRO 6000 Blackwell Server Edition",
     "rtx-pro-6000", "RTX-PRO-6000"],
)
def test_rtx_pro_6000_names(name: str) -> None:
    assert "RTX-PRO-6000" in VOCABULARY
    assert normalize_gpu_model(name) == "RTX-PRO-6000"


def test_older_quadro_card_is_not_taken_for_the_pro() -> None:
    assert normalize_gpu_model("Quadro RTX 6000") == "Quadro RTX 6000"


@pytest.mark.parametrize(
    ("name", "canon"),
    [
        ("NVIDIA H100", "H100"), ("nvidia-tesla-a100", "A100-40GB"), ("nvidia-a100-80gb", "A100-80GB"),
        ("A100 80GB PCIe", "A100-80GB"), ("nvidia-l4", "L4"), ("NVIDIA A10G", "A10G"), ("nvidia-tesla-t4", "T4"),
        ("NVIDIA T4G", "T4G"), ("Tesla V100-SXM2-32GB", "V100-32GB"), ("nvidia-tesla-v100", "V100"),
        ("nvidia-tesla-p4", "P4"), ("AMD Instinct MI300X", "MI300X"), ("AWS Inferentia2", "Inferentia2"),
        ("ultragpu", "A100-80GB"), ("nvidia-h200-141gb", "H200"), ("nvidia-b200", "B200"),
    ],
)
def test_existing_mappings_unchanged(name: str, canon: str) -> None:
    assert normalize_gpu_model(name) == canon


@pytest.mark.parametrize(
    ("name", "canon"),
    [
        ("NVIDIA B300", "B300"), ("NVIDIA GRID K520", "K520"),  # ec2instances.info's spellings
        ("NVIDIA RTX A6000", "RTX A6000"),  # not in the vocabulary yet: the vendor prefix still goes
        ("  Qualcomm AI 100 Accelerators ", "AI100"),  # other vendors by model number, as MI300X
        ("AMD Radeon Pro V520", "V520"),
        ("Radeon Pro V620", "V620"),
        ("Radeon MI25", "MI25"),
        ("  Intel Data Center GPU Max 1100 ", "Intel Data Center GPU Max 1100"),  # unknown: trimmed only
    ],
)
def test_vendor_prefix_and_newer_models(name: str, canon: str) -> None:
    assert normalize_gpu_model(name) == canon
    assert gpu_matches(canon, normalize_gpu_model(name))


@pytest.mark.parametrize("name", ["H1000", "v1000", "A1000", "K800", "B2000"])
def test_a_model_number_followed_by_a_digit_is_another_model(name: str) -> None:
    assert normalize_gpu_model(name) == name
