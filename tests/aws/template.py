"""Reading infrastructure/template.yaml in tests: CloudFormation's short tags as plain data,
and the ASL with the template's substitutions applied as CloudFormation would."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infrastructure" / "template.yaml"
ACCOUNT, REGION = "123456789012", "us-east-1"


class _CfnLoader(yaml.SafeLoader):
    """``!Ref X`` -> ``{"Ref": X}``, ``!GetAtt A.B`` -> ``{"Fn::GetAtt": [A, B]}``, ..."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _tag)


@cache
def template() -> dict[str, Any]:
    text = TEMPLATE.read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.load(text, _CfnLoader)  # _CfnLoader is a SafeLoader

    return data


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template()["Resources"].items() if v["Type"] == kind}


def function_name(logical: str, prefix: str = "FileFerry") -> str:
    sub = resources("AWS::Serverless::Function")[logical]["Properties"]["FunctionName"]
    return str(sub["Fn::Sub"]).replace("${NamePrefix}", prefix)


def deployed_definition(prefix: str = "FileFerry") -> str:
    """The ASL as the stack deploys it: each ``${X}`` becomes the function's ARN."""
    machine = resources("AWS::Serverless::StateMachine")["TransferStateMachine"]["Properties"]
    text = (TEMPLATE.parent / machine["DefinitionUri"]).resolve().read_text(encoding="utf-8")
    arns = {}
    for key, value in machine["DefinitionSubstitutions"].items():
        logical, attribute = value["Fn::GetAtt"]
        assert attribute == "Arn"
        arns[key] = (f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"
                     f"{function_name(logical, prefix)}")
    return re.sub(r"\$\{(\w+)\}", lambda m: arns.get(m.group(1), m.group(0)), text)
