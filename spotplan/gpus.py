"""The one GPU-model vocabulary shared by every cloud, and the normaliser every importer uses.

Providers name the same silicon differently (AWS "NVIDIA H100", GCP "nvidia-tesla-a100", Azure
"A100 80GB PCIe", SkyPilot "A100-80GB"); offers only match across clouds when they agree here.
"""

from __future__ import annotations

import re

#: Canonical names, as used in the price table's `gpu_model` column (DESIGN.md §4.2).
VOCABULARY: tuple[str, ...] = (
    "B300",
    "B200",
    "H200",
    "H100",
    "A100-80GB",
    "A100-40GB",
    "L40S",
    "L4",
    "A10G",
    "A10",
    "T4",
    "T4G",
    "V100",
    "V100-32GB",
    "P100",
    "P4",
    "K80",
    "K520",
    "M60",
    "A40",
    "RTX-PRO-6000",
    "MI300X",
    "MI25",
    "V520",
    "V620",
    "AI100",
    "Gaudi",
    "Inferentia",
    "Inferentia2",
    "Trainium",
    "Trainium2",
)

# Ordered: the first pattern that matches wins, so the more specific ones come first. A model number
# is never followed by another digit (`H1000` is no H100, `--gpu` typos stay unknown).
_PATTERNS: tuple[tuple[str, str], ...] = (
    # GCP's G4 machines carry the RTX PRO 6000 (Blackwell): accelerator `nvidia-rtx-pro-6000`, which
    # Cyclenerd's price data spells `rtx6000`. The older Quadro RTX 6000 is offered by none of the
    # three clouds, so its name ("Quadro RTX 6000") is deliberately left unmatched.
    (r"rtx.?pro.?6000|^(nvidia.)?rtx.?6000$", "RTX-PRO-6000"),
    (r"b300(?!\d)", "B300"),
    (r"b200(?!\d)", "B200"),
    (r"h200(?!\d)", "H200"),
    (r"h100(?!\d)", "H100"),
    (r"a100(?!\d).*80|80\s*gb.*a100(?!\d)|a100-?80|ultragpu", "A100-80GB"),
    (r"a100(?!\d)", "A100-40GB"),
    (r"l40s", "L40S"),
    (r"\bl4\b|nvidia-l4|^l4$|tesla-l4", "L4"),
    (r"a10g", "A10G"),
    (r"\ba10\b|a10-|nvidia-a10$|^a10$", "A10"),
    (r"t4g", "T4G"),
    (r"\bt4\b|tesla-t4|^t4$", "T4"),
    (r"v100(?!\d).*32|v100-32", "V100-32GB"),
    (r"v100(?!\d)", "V100"),
    (r"p100(?!\d)", "P100"),
    (r"tesla-p4\b|\bp4\b", "P4"),
    (r"k80(?!\d)", "K80"),
    (r"k520(?!\d)", "K520"),  # AWS g2: "NVIDIA GRID K520"
    (r"m60(?!\d)", "M60"),
    (r"a40\b", "A40"),
    (r"mi300x", "MI300X"),
    # AMD's Radeon parts and Qualcomm's accelerator, by model number (as MI300X is):
    # AWS "AMD Radeon Pro V520", Azure "Radeon MI25" (NVv4) and "Radeon Pro V620" (NGads),
    # AWS dl2q "Qualcomm AI 100 Accelerators".
    (r"\bmi25\b", "MI25"),
    (r"radeon.*v520|^v520$", "V520"),
    (r"radeon.*v620|^v620$", "V620"),
    (r"qualcomm.*ai\s*100|^ai\s*100$", "AI100"),
    (r"gaudi", "Gaudi"),
    (r"inferentia\s*2|inferentia2", "Inferentia2"),
    (r"inferentia", "Inferentia"),
    (r"trainium\s*2|trainium2", "Trainium2"),
    (r"trainium", "Trainium"),
)

_CANON_LOWER = {name.lower(): name for name in VOCABULARY}


def normalize_gpu_model(name: str | None) -> str:
    """Map any provider's GPU name onto VOCABULARY; unknown names come back trimmed, without a
    leading "NVIDIA ", otherwise unchanged.

    >>> normalize_gpu_model("NVIDIA H100")
    'H100'
    >>> normalize_gpu_model("nvidia-tesla-a100")
    'A100-40GB'
    >>> normalize_gpu_model("nvidia-a100-80gb")
    'A100-80GB'
    """
    if name is None:
        return ""
    raw = str(name).strip()
    if not raw:
        return ""
    if raw.lower() in _CANON_LOWER:
        return _CANON_LOWER[raw.lower()]
    low = raw.lower().replace("_", " ")
    for pattern, canon in _PATTERNS:
        if re.search(pattern, low):
            return canon
    # AWS and ec2instances.info put the vendor first ("NVIDIA X") where the other clouds write "X",
    # so a model the vocabulary does not know yet still gets one name across clouds. Other vendors'
    # names the vocabulary does not know carry no such prefix and stay as given.
    return _NVIDIA_PREFIX.sub("", raw).strip() or raw


_NVIDIA_PREFIX = re.compile(r"^nvidia[\s_-]+", re.IGNORECASE)


# A size suffix ("-80GB") marks a variant of a family; the family is the name without it.
_VARIANT = re.compile(r"^(?P<family>.+?)-\d+GB$", re.IGNORECASE)


def gpu_family(model: str) -> str:
    """The family of a vocabulary name: `A100-80GB` → `A100`, `V100-32GB` → `V100`, `H100` → `H100`."""
    m = _VARIANT.match(model)
    return m.group("family") if m else model


_FAMILIES = {gpu_family(name).lower() for name in VOCABULARY}


def gpu_matches(wanted: str | None, model: str | None) -> bool:
    """Does a row's GPU `model` match a `--gpu` filter?

    A bare family name (`A100`, `V100`, any case) matches every variant of it (A100-40GB and A100-80GB;
    V100 and V100-32GB); any other name, in any provider's spelling, is normalised and matches only
    itself (`A100-80GB`, `nvidia-tesla-a100` → A100-40GB). No filter matches everything.

    >>> gpu_matches("a100", "A100-80GB"), gpu_matches("A100-40GB", "A100-80GB")
    (True, False)
    """
    if not wanted or not str(wanted).strip():
        return True
    have = normalize_gpu_model(model)
    key = str(wanted).strip().lower()
    if key in _FAMILIES:
        return gpu_family(have).lower() == key
    return have.lower() == normalize_gpu_model(wanted).lower()
