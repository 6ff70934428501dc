"""Intrinsic functions: argument parsing, every function, and States.IntrinsicFailure."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest

from tests.workflow.asl.support import error_of, output_of, single

DATA = {"name": "Arnav", "n": 3, "list": [1, 2, 2, "a", {"k": 1}, {"k": 1}],
        "obj": {"a": {"x": 1}, "b": 2}, "other": {"a": {"y": 2}, "c": 3},
        "json": '{"k": [1, true, null]}', "csv": "a,b;;c", "tmpl": "{} and {}",
        "items": [{"id": "p,q"}, {"id": "r"}]}


async def call(expression: str, data: Any = DATA, **options: Any) -> Any:
    out = await output_of(single({"Type": "Pass", "Parameters": {"v.$": expression}}), data,
                          **options)
    return out["v"]


CASES: list[tuple[str, Any]] = [
    ("States.Format('Hello, my name is {}.', $.name)", "Hello, my name is Arnav."),
    ("States.Format($.tmpl, $.n, $.name)", "3 and Arnav"),
    ("States.Format('{} {} {} {}', $.obj, $.list[4], true, null)",
     "{a={x=1}, b=2} {k=1} true null"),
    ("States.Format('it\\'s \\{literal\\} \\\\ {}', 1.5)", "it's {literal} \\ 1.5"),
    ("States.Format('none')", "none"),
    ("States.StringToJson($.json)", {"k": [1, True, None]}),
    ("States.JsonToString($.obj)", '{"a":{"x":1},"b":2}'),
    ("States.JsonMerge($.obj, $.other, false)", {"a": {"y": 2}, "b": 2, "c": 3}),
    ("States.Array('a', 1, -2.5, true, null, $.n, States.Array())",
     ["a", 1, -2.5, True, None, 3, []]),
    ("States.ArrayPartition(States.ArrayRange(1, 5, 1), 2)", [[1, 2], [3, 4], [5]]),
    ("States.ArrayContains($.list, $.obj.b)", True),
    ("States.ArrayContains($.list, true)", False),   # true is not 1
    ("States.ArrayContains($.list, $.list[4])", True),
    ("States.ArrayRange(1, 9, 2)", [1, 3, 5, 7, 9]),
    ("States.ArrayRange(5, 1, 2)", []),
    ("States.ArrayRange(0, 999, 1)", list(range(1000))),
    ("States.ArrayGetItem($.list, 3)", "a"),
    ("States.ArrayLength($.list)", 6),
    ("States.ArrayUnique($.list)", [1, 2, "a", {"k": 1}]),
    ("States.Base64Encode('Data to encode')", base64.b64encode(b"Data to encode").decode()),
    ("States.Base64Decode('RGF0YSB0byBlbmNvZGU=')", "Data to encode"),
    ("States.Hash('input data', 'SHA-256')", hashlib.sha256(b"input data").hexdigest()),
    ("States.Hash($.name, 'MD5')", hashlib.md5(b"Arnav").hexdigest()),
    ("States.Hash($.name, 'SHA-1')", hashlib.sha1(b"Arnav").hexdigest()),
    ("States.Hash($.name, 'SHA-512')", hashlib.sha512(b"Arnav").hexdigest()),
    ("States.MathAdd(111, -1)", 110),
    ("States.MathAdd($.n, 1.5)", 5),                  # rounded half up, as Java
    ("States.MathAdd(-2.5, 0)", -2),
    ("States.StringSplit($.csv, ',;')", ["a", "b", "c"]),
    ("States.StringSplit('a b', '')", ["a b"]),
    ("States.ArrayLength(States.StringSplit(States.Format('{},{}', 'x', 'y'), ','))", 2),
    ("States.ArrayGetItem($.items[?(@.id == 'p,q')], 0)", {"id": "p,q"}),  # commas in a path
    ("States.Format('{}', $$.Execution.Name)", "exec-1"),
    ("  States.ArrayLength( States.Array( 1 , 2 ) )  ".strip(), 2),
]


@pytest.mark.parametrize(("expression", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_function(expression: str, expected: Any) -> None:
    assert await call(expression, execution_name="exec-1") == expected


async def test_math_random_uses_the_injected_random_or_the_seed() -> None:
    assert await call("States.MathRandom(1, 10)", random=lambda: 0.5) == 6
    assert await call("States.MathRandom(1, 10)", random=lambda: 0.999999) == 10
    seeded = [await call("States.MathRandom(1, 1000, 42)") for _ in range(2)]
    assert seeded[0] == seeded[1] and 1 <= seeded[0] <= 1000


async def test_uuid_is_a_version_4_uuid() -> None:
    value = await call("States.UUID()")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        value)


FAILURES = [
    "States.Format('{} {}', 1)",
    "States.StringToJson('{nope')",
    "States.JsonMerge($.obj, $.other, true)",
    "States.JsonMerge($.obj, $.list, false)",
    "States.ArrayPartition($.list, 0)",
    "States.ArrayRange(1, 5, 0)",
    "States.ArrayRange(5, 1, -2)",
    "States.ArrayRange(0, 1000, 1)",
    "States.ArrayGetItem($.list, 6)",
    "States.ArrayLength($.name)",
    "States.Base64Decode('***')",
    "States.Hash($.name, 'SHA-3')",
    "States.MathAdd('1', 2)",
    "States.StringSplit($.n, ',')",
]


@pytest.mark.parametrize("expression", FAILURES)
async def test_bad_arguments_are_intrinsic_failure(expression: str) -> None:
    definition = single({"Type": "Pass", "Parameters": {"v.$": expression}})
    error, cause = await error_of(definition, DATA)
    assert error == "States.IntrinsicFailure"
    assert cause and cause.startswith(expression.split("(")[0])


async def test_codec_and_hash_inputs_are_limited_to_10000_characters() -> None:
    data = {"s": "x" * 10_001}
    for expression in ("States.Base64Encode($.s)", "States.Hash($.s, 'MD5')"):
        definition = single({"Type": "Pass", "Parameters": {"v.$": expression}})
        assert (await error_of(definition, data))[0] == "States.IntrinsicFailure"
    assert len(await call("States.Base64Encode($.s)", {"s": "x" * 10_000})) > 10_000


async def test_a_missing_path_argument_is_runtime() -> None:
    definition = single({"Type": "Pass", "Parameters": {"v.$": "States.ArrayLength($.nope)"}})
    assert (await error_of(definition, DATA))[0] == "States.Runtime"


async def test_intrinsics_work_in_result_selector_and_item_selector() -> None:
    definition = single({
        "Type": "Map", "ItemsPath": "$.list",
        "ItemSelector": {"label.$": "States.Format('#{}', $$.Map.Item.Index)"},
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
        "ResultSelector": {"count.$": "States.ArrayLength($)", "first.$": "$[0].label"}})
    assert await output_of(definition, DATA) == {"count": 6, "first": "#0"}
