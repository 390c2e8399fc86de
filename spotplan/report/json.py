"""The JSON rendering: the analysis result document itself (schema spotplan.analysis/1, DESIGN.md §4.3).

Keys stay in schema order and floats are not rounded: this is the machine format that other tools
and `AnalysisResult.model_validate` read back.
"""

from __future__ import annotations

import json

from spotplan.models import AnalysisResult


def render_json(result: AnalysisResult) -> str:
    return json.dumps(result.to_json_dict(), indent=2, ensure_ascii=False) + "\n"
