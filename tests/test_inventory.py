"""spotplan.inventory: YAML and CSV inventories into Workload objects, and one clear line for every
way an inventory file can be wrong."""

from __future__ import annotations

import csv
import io
import os
import string
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spotplan.errors import InputError
from spotplan.inventory import CSV_COLUMNS, parse_inventory_text, read_inventories, read_inventory
from spotplan.models import Workload

FIXTURES = Path(__file__).parent / "fixtures" / "inventory"
HEADER = "id,kind,provider,region,instance_type,remaining_hours"
ROW = "train-a,training,aws,us-east-1,p4d.24xlarge,48"


def _workload(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "a",
        "kind": "batch",
        "provider": "aws",
        "region": "us-east-1",
        "instance_type": "p4d.24xlarge",
        "remaining_hours": 3,
    }
    base.update(fields)
    return base


def _yaml(*workloads: dict[str, Any]) -> str:
    return yaml.safe_dump({"workloads": list(workloads)}, sort_keys=False)


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def _error(paths: list[Path], known: dict[str, list[str]] | None = None) -> str:
    with pytest.raises(InputError) as info:
        read_inventories(paths, known)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    return message


# ---- reading -----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_yaml_and_csv_of_the_same_fleet_give_equal_workloads() -> None:
    from_yaml = read_inventory(FIXTURES / "fleet.yaml")
    from_csv = read_inventory(FIXTURES / "fleet.csv")
    assert [w.id for w in from_yaml] == [
        "llm-pretrain",
        "nightly-embeddings",
        "notebook-alice",
        "chat-serving",
    ]
    assert from_yaml == from_csv

    llm = from_csv[0]
    assert (llm.kind, llm.provider, llm.count, llm.market, llm.remaining_hours) == (
        "training",
        "aws",
        2,
        "on-demand",
        48.0,
    )
    assert llm.deadline == datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert llm.checkpoint.enabled and llm.checkpoint.is_durable
    assert (llm.checkpoint.interval_minutes, llm.checkpoint.save_seconds, llm.checkpoint.restore_seconds) == (
        30,
        90,
        300,
    )
    assert llm.checkpoint.size_gb == 200 and llm.handles_preemption and llm.provision_minutes == 6
    assert llm.instance_ids == ["i-0abc123", "i-0abc124"]
    assert llm.launch is not None and llm.launch.checkpoint_trigger is not None
    assert llm.launch.checkpoint_trigger.via == "ssm"
    assert llm.launch.checkpoint_trigger.command == "pkill -USR1 -f train.py"
    assert llm.launch.network is not None and llm.launch.network.security_groups == ["sg-0abc", "sg-0def"]
    assert llm.labels == {"team": "research", "cost-center": "4711"}

    embed = from_csv[1]
    assert embed.gang is False and not embed.is_gang and embed.zone == "us-central1-a"
    assert embed.checkpoint.durable is True and embed.checkpoint.is_durable
    assert embed.launch is not None and embed.launch.readiness_command == "curl -sf http://localhost:8080/healthz"

    notebook = from_csv[2]  # every optional cell empty: the model's defaults, not empty strings
    assert notebook.count == 1 and notebook.market == "on-demand" and notebook.gang is None
    assert not notebook.checkpoint.enabled and notebook.launch is None and notebook.instance_ids == []
    assert from_csv[3].kind == "inference" and from_csv[3].labels == {}


def test_bare_list_yaml_and_json(tmp_path: Path) -> None:
    bare = _write(tmp_path, "bare.yml", yaml.safe_dump([_workload(id="x"), _workload(id="y")]))
    assert [w.id for w in read_inventory(bare)] == ["x", "y"]
    as_json = _write(
        tmp_path,
        "fleet.json",
        '{"workloads": [{"id": "j", "kind": "dev", "provider": "gcp", '
        '"region": "us-central1", "instance_type": "g2-standard-4", "remaining_hours": 1}]}',
    )
    assert read_inventory(as_json)[0].provider == "gcp"


def test_csv_dotted_headers_separators_booleans_and_bom(tmp_path: Path) -> None:
    content = (
        "\ufeffID, Kind ,provider,region,instance_type,remaining-hours,checkpoint.enabled,"
        "checkpoint.interval_minutes,checkpoint.save_seconds,checkpoint.restore_seconds,gang,"
        "handles_preemption,instance_ids,launch.network.security_groups,labels,\n"
        "a,training,aws,us-east-1,p4d.24xlarge,10,YES,30,60,120,0,1,i-1|i-2,sg-1 sg-2,team=ml; env = prod,\n"
        "\n"
        "b,batch,aws,us-east-1,p4d.24xlarge,2.5,false,,,,no,true,i-3,,,\n"
    )
    a, b = read_inventory(_write(tmp_path, "fleet.csv", content))
    assert a.checkpoint.enabled and a.checkpoint.interval_minutes == 30 and a.gang is False
    assert a.handles_preemption and a.instance_ids == ["i-1", "i-2"]
    assert a.launch is not None and a.launch.network is not None
    assert a.launch.network.security_groups == ["sg-1", "sg-2"]
    assert a.labels == {"team": "ml", "env": "prod"}
    assert (b.id, b.remaining_hours, b.checkpoint.enabled, b.gang) == ("b", 2.5, False, False)


def test_csv_labels_flattened_one_column_per_key(tmp_path: Path) -> None:
    # §4.1: CSV has "the same fields flattened"; `labels: {team: research}` flattens to `labels_team`
    # like `checkpoint.interval_minutes` to `checkpoint_interval_minutes`. It adds to a `labels` cell.
    content = (
        "id,kind,provider,region,instance_type,remaining_hours,labels_team,Labels.cost-center,labels\n"
        "a,dev,aws,us-east-1,g5.xlarge,10,research,4711,owner=bob\n"
        "b,dev,aws,us-east-1,g5.xlarge,10,,,\n"
    )
    a, b = read_inventory(_write(tmp_path, "f.csv", content))
    assert a.labels == {"team": "research", "cost-center": "4711", "owner": "bob"}
    assert b.labels == {}
    twice = _write(tmp_path, "g.csv", "id,kind,provider,region,instance_type,remaining_hours,labels_team,labels team\n")
    assert "column 'labels team' appears twice" in _error([twice])


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("true", True),
        ("false", False),
        ("yes", True),
        ("no", False),
        ("1", True),
        ("0", False),
        ("True", True),
        ("NO", False),
    ],
)
def test_csv_booleans(tmp_path: Path, cell: str, expected: bool) -> None:
    path = _write(tmp_path, "b.csv", f"{HEADER},gang\n{ROW},{cell}\n")
    assert read_inventory(path)[0].gang is expected


def test_format_is_sniffed_without_a_telling_suffix(tmp_path: Path) -> None:
    as_csv = _write(tmp_path, "fleet.txt", f"{HEADER}\n{ROW}\n")
    as_yaml = _write(tmp_path, "fleet", "# comment\n" + _yaml(_workload(id="train-a")))
    assert read_inventory(as_csv)[0].id == read_inventory(as_yaml)[0].id == "train-a"


def test_several_files_are_concatenated_in_order(tmp_path: Path) -> None:
    one = _write(tmp_path, "one.yaml", _yaml(_workload(id="y1"), _workload(id="y2")))
    two = _write(tmp_path, "two.csv", f"{HEADER}\n{ROW}\n")
    assert [w.id for w in read_inventories([one, two])] == ["y1", "y2", "train-a"]


def test_yaml_scalars_that_look_like_other_types_stay_what_the_field_needs(tmp_path: Path) -> None:
    # An unquoted date in YAML would be a date object and a bare number an int.
    path = _write(
        tmp_path,
        "f.yaml",
        "workloads:\n  - {id: 42, kind: batch, provider: aws, region: r,"
        " instance_type: x, remaining_hours: 1, deadline: 2026-12-01}\n",
    )
    (w,) = read_inventory(path)
    assert w.id == "42" and w.deadline == datetime(2026, 12, 1, tzinfo=timezone.utc)


def test_checkpoint_trigger_settings_for_migrate_have_csv_columns(tmp_path: Path) -> None:
    trigger = {"via": "docker", "command": "kill -USR1 1", "container": "trainer"}
    from_yaml = read_inventory(_write(tmp_path, "f.yaml", _yaml(_workload(launch={"checkpoint_trigger": trigger}))))
    content = (
        "id,kind,provider,region,instance_type,remaining_hours,launch.checkpoint_trigger.via,"
        "launch_checkpoint_trigger_command,launch_checkpoint_trigger_container\n"
        "a,batch,aws,us-east-1,p4d.24xlarge,3,docker,kill -USR1 1,trainer\n"
    )
    from_csv = read_inventory(_write(tmp_path, "f.csv", content))
    assert from_csv == from_yaml
    launch = from_csv[0].launch
    assert launch is not None and launch.checkpoint_trigger is not None
    assert launch.checkpoint_trigger.model_extra == {"container": "trainer"}


def test_yaml_anchors_and_merge_keys_share_settings(tmp_path: Path) -> None:
    content = (
        "workloads:\n"
        "  - &base {id: a, kind: batch, provider: aws, region: us-east-1, instance_type: g5.xlarge,"
        " remaining_hours: 4, labels: {team: ml}}\n"
        "  - <<: *base\n"
        "    id: b\n"
        "    remaining_hours: 8\n"
    )
    a, b = read_inventory(_write(tmp_path, "f.yaml", content))
    assert (b.id, b.instance_type, b.remaining_hours, b.labels) == ("b", "g5.xlarge", 8.0, {"team": "ml"})
    assert a.remaining_hours == 4.0


# ---- errors: one line naming file, workload and field ------------------------------------------

YAML_ERRORS = [
    (
        "invalid YAML with a line number",
        "workloads:\n  - id: a\n    kind: [\n",
        "f.yaml: line 4, column 1: invalid YAML: did not find expected node content",
    ),
    (
        "tab indentation",
        "workloads:\n\t- id: a\n",
        "f.yaml: line 2, column 1: invalid YAML: found character that cannot start any token",
    ),
    (
        "duplicate YAML key",
        "workloads:\n  - id: a\n    id: b\n",
        "f.yaml: line 3, column 5: invalid YAML: duplicate key 'id'",
    ),
    (
        "not a mapping or list",
        "just some words\n",
        "f.yaml: expected a mapping with a 'workloads:' list (or a list of workloads), got 'just some words'",
    ),
    ("empty file", "", "f.yaml: no workloads (expected a 'workloads:' list with at least one item)"),
    ("empty list", "workloads: []\n", "f.yaml: no workloads"),
    (
        "workloads not a list",
        "workloads: {id: a}\n",
        "f.yaml: workloads: expected a list of workloads, got a mapping",
    ),
    (
        "misspelt top key",
        "workload:\n  - id: a\n",
        "f.yaml: unknown top-level key 'workload' (did you mean 'workloads'?)",
    ),
    (
        "one workload without the list",
        "id: a\nkind: batch\n",
        "f.yaml: expected a 'workloads:' list at the top, found a single workload's fields",
    ),
    (
        "item not a mapping",
        "workloads:\n  - {id: a}\n  - llm\n",
        "f.yaml: item 2 (line 3): expected a mapping of workload fields, got 'llm'",
    ),
    (
        "missing id",
        "workloads:\n  - kind: batch\n    provider: aws\n",
        "f.yaml: item 1 (line 2): id: required field is missing (expected non-empty text)",
    ),
    (
        "missing required field",
        _yaml({k: v for k, v in _workload(id="llm-pretrain").items() if k != "region"}),
        "f.yaml: workload 'llm-pretrain': region: required field is missing (expected non-empty text)",
    ),
    (
        "wrong type",
        _yaml(
            _workload(
                id="llm-pretrain",
                checkpoint={
                    "enabled": True,
                    "interval_minutes": 30,
                    "save_seconds": "abc",
                    "restore_seconds": 300,
                },
            )
        ),
        "f.yaml: workload 'llm-pretrain': checkpoint.save_seconds: expected a number >= 0, got 'abc'",
    ),
    (
        "bad enum",
        _yaml(_workload(kind="trainig")),
        "f.yaml: workload 'a': kind: expected one of training, batch, dev, test, inference, realtime, "
        "got 'trainig' (did you mean 'training'?)",
    ),
    (
        "bad nested enum",
        _yaml(_workload(launch={"checkpoint_trigger": {"via": "sms"}})),
        "f.yaml: workload 'a': launch.checkpoint_trigger.via: "
        "expected one of ssm, ssh, docker, signal, command, got 'sms' (did you mean 'ssm'?)",
    ),
    (
        "bad provider",
        _yaml(_workload(provider="AWS ")),
        "f.yaml: workload 'a': provider: expected one of aws, gcp, azure, got 'AWS '",
    ),
    (
        "negative number",
        _yaml(_workload(remaining_hours=-3)),
        "f.yaml: workload 'a': remaining_hours: expected a number >= 0 and <= 100000, got -3",
    ),
    (
        "zero count",
        _yaml(_workload(count=0)),
        "f.yaml: workload 'a': count: expected a whole number >= 1 and <= 100000, got 0",
    ),
    (
        "fractional count",
        _yaml(_workload(count=1.5)),
        "f.yaml: workload 'a': count: expected a whole number >= 1 and <= 100000, got 1.5",
    ),
    (
        "hours past any real job (the costs would overflow)",
        _yaml(_workload(remaining_hours=1e300)),
        "f.yaml: workload 'a': remaining_hours: expected a number >= 0 and <= 100000, got 1e+300",
    ),
    (
        "count past any real fleet",
        _yaml(_workload(count=100_001)),
        "f.yaml: workload 'a': count: expected a whole number >= 1 and <= 100000, got 100001",
    ),
    (
        "boolean as a number",
        _yaml(_workload(remaining_hours=True)),
        "f.yaml: workload 'a': remaining_hours: expected a number >= 0 and <= 100000, got true",
    ),
    (
        "infinite hours",
        "workloads:\n  - {id: a, kind: batch, provider: aws, region: r, instance_type: x, remaining_hours: .inf}\n",
        "f.yaml: workload 'a': remaining_hours: expected a number >= 0 and <= 100000, got inf",
    ),
    (
        "unknown field",
        _yaml({**{k: v for k, v in _workload().items() if k != "remaining_hours"}, "remaning_hours": 3}),
        "f.yaml: workload 'a': remaning_hours: unknown field (did you mean 'remaining_hours'?)",
    ),
    (
        "unknown nested field",
        _yaml(_workload(checkpoint={"enabld": True})),
        "f.yaml: workload 'a': checkpoint.enabld: unknown field (did you mean 'enabled'?)",
    ),
    (
        "checkpoint without its numbers",
        _yaml(_workload(checkpoint={"enabled": True, "interval_minutes": 30})),
        "f.yaml: workload 'a': checkpoint.save_seconds: required when checkpoint.enabled is true "
        "(expected a number >= 0)",
    ),
    (
        "zero checkpoint interval",
        _yaml(_workload(checkpoint={"enabled": True, "interval_minutes": 0, "save_seconds": 1, "restore_seconds": 1})),
        "f.yaml: workload 'a': checkpoint.interval_minutes: expected a number > 0, got 0",
    ),
    (
        "deadline not ISO-8601",
        _yaml(_workload(deadline="next tuesday")),
        "f.yaml: workload 'a': deadline: expected an ISO-8601 date or time such as 2026-12-01T00:00:00Z, "
        "got 'next tuesday'",
    ),
    (
        "impossible date",
        "workloads:\n  - {id: a, kind: batch, provider: aws, region: r, instance_type: x,"
        " remaining_hours: 1, deadline: 2026-13-45}\n",
        "f.yaml: workload 'a': deadline: expected an ISO-8601",
    ),
    (
        "unix time is not ISO-8601",
        _yaml(_workload(deadline=1700000000)),
        "f.yaml: workload 'a': deadline: expected an ISO-8601 date or time",
    ),
    (
        "list field given a string",
        _yaml(_workload(instance_ids="i-1")),
        "f.yaml: workload 'a': instance_ids: expected a list of text values",
    ),
    (
        "checkpoint not a mapping",
        _yaml(_workload(checkpoint="yes")),
        "f.yaml: workload 'a': checkpoint: expected a mapping with the fields enabled, interval_minutes",
    ),
    (
        "duplicate id in one file",
        _yaml(_workload(id="a"), _workload(id="b"), _workload(id="a")),
        "f.yaml: workload 'a': id: duplicate id 'a' (first defined in ",
    ),
]


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in YAML_ERRORS], ids=[c[0] for c in YAML_ERRORS])
def test_yaml_errors_are_one_line_naming_file_workload_and_field(tmp_path: Path, content: str, expected: str) -> None:
    path = _write(tmp_path, "f.yaml", content)
    message = _error([path])
    assert message.startswith(f"{tmp_path / 'f.yaml'}:")
    assert message.replace(str(tmp_path) + os.sep, "").startswith(expected), message


CSV_ERRORS = [
    (
        "unknown column",
        "id,kind,provider,region,instance_type,remaning_hours\n",
        "f.csv: line 1: unknown column 'remaning_hours' (did you mean 'remaining_hours'?)",
    ),
    (
        "missing column",
        "id,kind,provider,region,instance_type\na,batch,aws,r,x\n",
        "f.csv: line 1: missing column 'remaining_hours' (required columns: id, kind, provider, region, "
        "instance_type, remaining_hours)",
    ),
    (
        "semicolon separated",
        "id;kind;provider;region;instance_type;remaining_hours\n",
        "f.csv: line 1: unknown column 'id;kind;provider;region;instance_type...' "
        "(the header looks ';'- or tab-separated; expected commas)",
    ),
    ("column twice", f"{HEADER},ID\n", "f.csv: line 1: column 'ID' appears twice"),
    ("header only", f"{HEADER}\n", "f.csv: no workloads (the CSV has a header but no rows)"),
    ("blank file", "\n \n", "f.csv: no workloads (the file is empty"),
    ("too many cells", f"{HEADER}\n{ROW},extra\n", "f.csv: line 2: 7 values but the header has 6 columns"),
    (
        "value under no header",
        f"{HEADER},\n{ROW},x\n",
        "f.csv: line 2: a value 'x' in a column with no header",
    ),
    (
        "unterminated quote",
        f'{HEADER}\n"a,training,aws,r,x,3\n',
        "f.csv: line 2: invalid CSV: unexpected end of data",
    ),
    (
        "wrong type",
        f"{HEADER}\n{ROW[:-2]}abc\n",
        "f.csv: workload 'train-a' (line 2): remaining_hours: expected a number >= 0 and <= 100000, got 'abc'",
    ),
    (
        "missing id",
        f"{HEADER}\n,training,aws,r,x,3\n",
        "f.csv: line 2: id: required field is missing (expected non-empty text)",
    ),
    (
        "missing required value",
        f"{HEADER}\n\n{ROW}\nb,,aws,r,x,3\n",
        "f.csv: workload 'b' (line 4): kind: required field is missing (expected one of training, batch",
    ),
    (
        "bad enum",
        f"{HEADER},market\n{ROW},spto\n",
        "f.csv: workload 'train-a' (line 2): market: expected one of on-demand, spot, got 'spto' "
        "(did you mean 'spot'?)",
    ),
    (
        "bad boolean",
        f"{HEADER},gang\n{ROW},maybe\n",
        "f.csv: workload 'train-a' (line 2): gang: expected true or false, got 'maybe'",
    ),
    (
        "negative nested",
        f"{HEADER},checkpoint.enabled,checkpoint_interval_minutes,checkpoint_save_seconds,"
        f"checkpoint_restore_seconds\n{ROW},yes,30,-1,60\n",
        "f.csv: workload 'train-a' (line 2): checkpoint.save_seconds: expected a number >= 0, got '-1'",
    ),
    (
        "checkpoint without its numbers",
        f"{HEADER},checkpoint_enabled,checkpoint_interval_minutes\n{ROW},1,30\n",
        "f.csv: workload 'train-a' (line 2): checkpoint.save_seconds: required when checkpoint.enabled is true",
    ),
    (
        "not-a-number",
        f"{HEADER}\n{ROW[:-2]}nan\n",
        "f.csv: workload 'train-a' (line 2): remaining_hours: expected a number >= 0 and <= 100000, got 'nan'",
    ),
    (
        "bad labels",
        f"{HEADER},labels\n{ROW},team\n",
        "f.csv: workload 'train-a' (line 2): labels: expected key=value pairs separated by ';', got 'team'",
    ),
    (
        "deadline",
        f"{HEADER},deadline\n{ROW},12/01/2026\n",
        "f.csv: workload 'train-a' (line 2): deadline: expected an ISO-8601 date or time",
    ),
    (
        "duplicate id",
        f"{HEADER}\n{ROW}\n{ROW}\n",
        "f.csv: workload 'train-a' (line 3): id: duplicate id 'train-a' (first defined in ",
    ),
]


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in CSV_ERRORS], ids=[c[0] for c in CSV_ERRORS])
def test_csv_errors_are_one_line_naming_file_row_and_field(tmp_path: Path, content: str, expected: str) -> None:
    message = _error([_write(tmp_path, "f.csv", content)])
    assert message.replace(str(tmp_path) + os.sep, "").startswith(expected), message


def test_duplicate_id_across_files_names_both(tmp_path: Path) -> None:
    first = _write(tmp_path, "a.csv", f"{HEADER}\n{ROW}\n")
    second = _write(tmp_path, "b.yaml", _yaml(_workload(id="other"), _workload(id="train-a")))
    assert (
        _error([first, second])
        == f"{second}: workload 'train-a': id: duplicate id 'train-a' (first defined in {first} line 2)"
    )


def test_missing_file_directory_and_binary_content(tmp_path: Path) -> None:
    assert _error([tmp_path / "nope.yaml"]) == f"{tmp_path / 'nope.yaml'}: no such file"
    assert _error([tmp_path]) == f"{tmp_path}: is a directory, expected a YAML or CSV inventory file"
    under_a_file = _write(tmp_path, "plain", "x") / "f.yaml"
    assert _error([under_a_file]) == f"{under_a_file}: cannot read: Not a directory"
    binary = _write(tmp_path, "f.csv", f"{HEADER}\n".encode() + b"\xff\xfe\x00\x01\n")
    assert _error([binary]) == f"{binary}: line 2: not UTF-8 text (byte 0xff); expected a YAML or CSV inventory"
    with pytest.raises(InputError, match="no inventory file given"):
        read_inventories([])


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file regardless of mode")
def test_unreadable_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "f.yaml", _yaml(_workload()))
    path.chmod(0)
    assert _error([path]) == f"{path}: cannot read: Permission denied"


def test_unknown_instance_type_for_its_provider_gets_a_hint(tmp_path: Path) -> None:
    known = {"aws": ["p4d.24xlarge", "p5.48xlarge", "g5.xlarge"], "gcp": ["a2-highgpu-1g"]}
    typo = _write(tmp_path, "fleet.yaml", _yaml(_workload(id="llm-pretrain", instance_type="p4d.24xlarg")))
    assert _error([typo], known) == (
        f"{typo}: workload 'llm-pretrain': instance_type: unknown instance type 'p4d.24xlarg' for aws "
        "(did you mean 'p4d.24xlarge'?)"
    )
    far = _write(tmp_path, "far.csv", f"{HEADER}\nz,batch,gcp,us-central1,n1-standard-4,1\n")
    assert _error([far], known).endswith(
        "line 2): instance_type: unknown instance type 'n1-standard-4' for gcp (not in the price table)"
    )
    # Providers the table does not cover are not checked; known types pass.
    ok = _write(tmp_path, "ok.yaml", _yaml(_workload(id="b"), _workload(id="c", provider="azure", instance_type="S")))
    assert [w.id for w in read_inventories([ok], known)] == ["b", "c"]


def test_instance_type_hint_against_the_real_aws_gpu_catalog(tmp_path: Path, shared_data: Path) -> None:
    table = shared_data / "ec2instances-info-gpu" / "aws_gpu_prices_by_region.csv"
    with table.open(newline="", encoding="utf-8") as fh:
        known = {"aws": sorted({row["instance_type"] for row in csv.DictReader(fh)})}
    assert "p5.48xlarge" in known["aws"]
    typo = _write(tmp_path, "f.yaml", _yaml(_workload(instance_type="p5.48xlarg")))
    assert _error([typo], known).endswith("for aws (did you mean 'p5.48xlarge'?)")
    real = _write(tmp_path, "g.yaml", _yaml(_workload(instance_type="g5.12xlarge")))
    assert read_inventories([real], known)[0].instance_type == "g5.12xlarge"


# ---- through the CLI: exit code 2 and one line on stderr -------------------------------------


CLI_CASES = [
    YAML_ERRORS[0],
    YAML_ERRORS[4],
    YAML_ERRORS[10],
    YAML_ERRORS[12],
    YAML_ERRORS[13],
    YAML_ERRORS[21],
    YAML_ERRORS[23],
    YAML_ERRORS[25],
    YAML_ERRORS[-1],
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_analyze_reports_inventory_errors_with_exit_2(
    runner: Any, tmp_path: Path, content: str, expected: str
) -> None:
    from spotplan.cli.main import app

    path = _write(tmp_path, "f.yaml", content)
    result = runner.invoke(app, ["analyze", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    assert lines[0].replace(str(tmp_path) + os.sep, "").startswith("error: " + expected), lines[0]


@pytest.mark.timeout(60)
def test_cli_analyze_reports_csv_and_missing_file_with_exit_2(runner: Any, tmp_path: Path) -> None:
    from spotplan.cli.main import app

    bad = _write(tmp_path, "f.csv", CSV_ERRORS[0][1])
    for args, expected in (
        ([str(bad)], CSV_ERRORS[0][2]),
        ([str(tmp_path / "gone.yaml")], "gone.yaml: no such file"),
    ):
        result = runner.invoke(app, ["analyze", *args])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().replace(str(tmp_path) + os.sep, "") == "error: " + expected


@pytest.mark.timeout(60)
def test_cli_analyze_checks_instance_types_against_the_bundled_prices(runner: Any, tmp_path: Path) -> None:
    from spotplan.cli.main import app

    path = _write(tmp_path, "fleet.yaml", _yaml(_workload(id="llm-pretrain", instance_type="p4d.24xlarg")))
    result = runner.invoke(app, ["analyze", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {path}: workload 'llm-pretrain': instance_type: unknown instance type 'p4d.24xlarg' for aws "
        "(did you mean 'p4d.24xlarge'?)"
    )


@pytest.mark.timeout(60)
def test_cli_analyze_gives_the_same_result_for_the_yaml_and_csv_fleet(runner: Any) -> None:
    import json

    from spotplan.cli.main import app

    results = []
    for name in ("fleet.yaml", "fleet.csv"):
        result = runner.invoke(app, ["analyze", str(FIXTURES / name), "-o", "json", "--now", "2026-11-01T00:00:00Z"])
        assert result.exit_code == 0, result.output
        results.append(json.loads(result.stdout))
    assert [w["id"] for w in results[0]["workloads"]] == [w.id for w in read_inventory(FIXTURES / "fleet.yaml")]
    assert results[0]["workloads"] == results[1]["workloads"]
    assert results[0]["totals"] == results[1]["totals"]


# ---- properties: the reader never crashes ------------------------------------------------------

_FIELD_NAMES = [*CSV_COLUMNS, "checkpoint", "launch", "checkpoint_trigger", "network", "workloads", "via"]
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["training", "aws", "spot", "on-demand", "yes", "2026-12-01", "-1", ""]),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(_FIELD_NAMES) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_records = st.dictionaries(st.sampled_from(_FIELD_NAMES) | st.text(max_size=10), _values, max_size=12)
_bounded = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_outcome(read: Any, origin: str) -> None:
    try:
        workloads = read()
    except InputError as exc:
        assert len(str(exc).splitlines()) == 1 and str(exc).startswith(origin), str(exc)
        return
    assert workloads and all(isinstance(w, Workload) for w in workloads)
    for w in workloads:
        assert Workload.model_validate(w.model_dump()) == w
    assert len({w.id for w in workloads}) == len(workloads)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="spotplan-inventory-") as d:
        yield Path(d)


@pytest.mark.timeout(60)
@_bounded
@given(
    text=st.text(max_size=300)
    | st.sampled_from([HEADER + "\n" + ROW, _yaml(_workload())]).map(
        lambda s: s[: len(s) // 2] + '\n:,- "[' + s[len(s) // 2 :]
    )
)
def test_property_arbitrary_text_as_yaml_and_csv(text: str) -> None:
    _check_outcome(lambda: parse_inventory_text(text, origin="t.yaml", fmt="yaml"), "t.yaml")
    _check_outcome(lambda: parse_inventory_text(text, origin="t.csv", fmt="csv"), "t.csv")


@pytest.mark.timeout(60)
@_bounded
@given(content=st.binary(max_size=200), suffix=st.sampled_from([".yaml", ".csv", ""]))
def test_property_arbitrary_bytes_in_a_file(scratch: Path, content: bytes, suffix: str) -> None:
    path = scratch / f"b{suffix}"
    path.write_bytes(content)
    _check_outcome(lambda: read_inventory(path), str(path))


@pytest.mark.timeout(60)
@_bounded
@given(records=st.lists(_records, min_size=0, max_size=3), bare=st.booleans())
def test_property_arbitrary_field_dicts_as_yaml(scratch: Path, records: list[dict[str, Any]], bare: bool) -> None:
    document = records if bare else {"workloads": records}
    path = scratch / "d.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    _check_outcome(lambda: read_inventory(path), str(path))


_cells = st.text(max_size=12) | st.sampled_from(["training", "aws", "1", "yes", "-3", "a=b;c", "x|y z", ""])


@pytest.mark.timeout(60)
@_bounded
@given(
    columns=st.lists(st.sampled_from(list(CSV_COLUMNS)) | st.text(max_size=8), min_size=1, max_size=10),
    rows=st.lists(st.lists(_cells, max_size=11), max_size=4),
)
def test_property_arbitrary_csv_cells(scratch: Path, columns: list[str], rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "kind", "provider", "region", "instance_type", "remaining_hours", *columns])
    writer.writerows(rows)
    path = scratch / "r.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    _check_outcome(lambda: read_inventory(path), str(path))


# Valid workloads written both ways must read back identical: the CSV flattening loses nothing.
_word = st.text(string.ascii_letters + string.digits + "-_./:", min_size=1, max_size=12)
_command = (
    st.text(string.ascii_letters + string.digits + " -_./'\",", min_size=1, max_size=20).map(str.strip).filter(bool)
)
_number = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
_valid = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["training", "batch", "dev", "test", "inference", "realtime"]),
        "provider": st.sampled_from(["aws", "gcp", "azure"]),
        "region": _word,
        "instance_type": _word,
        "remaining_hours": st.floats(min_value=0, max_value=100_000, allow_nan=False, allow_infinity=False),
    },
    optional={
        "zone": _word,
        "gpu_model": _word,
        "gpu_count": st.floats(min_value=0.125, max_value=16),
        "count": st.integers(1, 64),
        "market": st.sampled_from(["on-demand", "spot"]),
        "deadline": st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)
        ).map(lambda d: d.isoformat()),
        "gang": st.booleans(),
        "handles_preemption": st.booleans(),
        "provision_minutes": _number,
        "checkpoint": st.fixed_dictionaries(
            {
                "enabled": st.booleans(),
                "interval_minutes": st.floats(min_value=0.5, max_value=600),
                "save_seconds": _number,
                "restore_seconds": _number,
            },
            optional={"storage": _word, "durable": st.booleans(), "size_gb": _number},
        ),
        "instance_ids": st.lists(_word, min_size=1, max_size=3),
        "launch": st.fixed_dictionaries(
            {"image": _word},
            optional={
                "resume_command": _command,
                "readiness_command": _command,
                "checkpoint_trigger": st.fixed_dictionaries(
                    {"via": st.sampled_from(["ssm", "ssh", "docker", "signal", "command"])},
                    optional={"command": _command},
                ),
                "network": st.fixed_dictionaries({"subnet": _word, "security_groups": st.lists(_word, min_size=1)}),
            },
        ),
        "labels": st.dictionaries(st.text(string.ascii_lowercase + "-", min_size=1, max_size=6), _word, max_size=3),
    },
)


def _flatten(record: dict[str, Any]) -> dict[str, str]:
    row: dict[str, str] = {}
    for column, path in CSV_COLUMNS.items():
        value: Any = record
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            continue
        if isinstance(value, list):
            value = ";".join(value)
        elif isinstance(value, dict):
            value = ";".join(f"{k}={v}" for k, v in value.items())
        row[column] = repr(value) if isinstance(value, float) else str(value)
    return row


@pytest.mark.timeout(60)
@settings(max_examples=100, deadline=None)
@given(records=st.lists(_valid, min_size=1, max_size=3))
def test_property_valid_workloads_read_the_same_from_yaml_and_csv(scratch: Path, records: list[dict[str, Any]]) -> None:
    records = [{"id": f"w{i}", **r} for i, r in enumerate(records)]
    yaml_path = scratch / "v.yaml"
    yaml_path.write_text(_yaml(*records), encoding="utf-8")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS))
    writer.writeheader()
    writer.writerows(_flatten(r) for r in records)
    csv_path = scratch / "v.csv"
    csv_path.write_text(buffer.getvalue(), encoding="utf-8")
    from_yaml = read_inventory(yaml_path)
    assert from_yaml == read_inventory(csv_path)
    assert from_yaml == [Workload.model_validate(r) for r in records]
