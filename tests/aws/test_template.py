"""infrastructure/template.yaml, checked offline: cfn-lint clean, every ASL placeholder
substituted (and every substitution used), every handler importable, tables as the store
expects them, and each role holding only what its step touches."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fileferry.aws.handlers import EVENT_HANDLERS, EVENT_SPECS, HANDLERS, SPECS, TRIGGERS
from fileferry.store.base import TABLES
from fileferry.workflow.asl import StateMachine
from fileferry.workflow.registry import definition_text
from tests.aws.template import TEMPLATE, deployed_definition, resources, template

ROOT = TEMPLATE.parents[1]
FUNCTION = "AWS::Serverless::Function"
SECRET_POLICIES = {"destinations": "DestinationSecretsPolicy",
                   "servicenow": "ServiceNowSecretsPolicy",
                   "notifications": "NotificationSecretsPolicy"}
S3_STEPS = {"ValidateInputFunction", "TransferFunction", "ChunkedTransferFunction"}


def test_cfn_lint_is_clean() -> None:
    lint = Path(sys.executable).with_name("cfn-lint")
    done = subprocess.run([str(lint), str(TEMPLATE)], capture_output=True, text=True,
                          check=False, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_placeholder_has_a_substitution_and_every_substitution_is_used() -> None:
    machine = resources("AWS::Serverless::StateMachine")["TransferStateMachine"]["Properties"]
    used = set(re.findall(r"\$\{(\w+)\}", definition_text()))
    given = set(machine["DefinitionSubstitutions"])
    assert used == given
    assert (TEMPLATE.parent / machine["DefinitionUri"]).resolve() == \
        ROOT / "src" / "fileferry" / "workflow" / "transfer.asl.json"
    text = deployed_definition()
    assert "${" not in re.sub(r'"Comment": "[^"]*"', "", text)
    StateMachine.load(text)


def test_the_deployed_definition_passes_statelint(tmp_path: Path) -> None:
    path = tmp_path / "transfer.asl.json"
    path.write_text(deployed_definition(), encoding="utf-8")
    lint = Path(sys.executable).with_name("statelint")
    done = subprocess.run([str(lint), str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_handler_path_imports_and_is_callable() -> None:
    functions = resources(FUNCTION)
    # logical id == ASL placeholder == step; an event function's EVENT_SPECS key; or a
    # function that starts executions (TRIGGERS)
    assert set(functions) == set(HANDLERS) | set(EVENT_HANDLERS) | set(TRIGGERS)
    handlers, specs = {**HANDLERS, **EVENT_HANDLERS, **TRIGGERS}, {**SPECS, **EVENT_SPECS}
    for logical, resource in functions.items():
        module, _, attr = resource["Properties"]["Handler"].rpartition(".")
        handler = getattr(importlib.import_module(module), attr)
        assert callable(handler) and handler is handlers[logical]
        name = resource["Properties"]["FunctionName"]["Fn::Sub"]
        function = specs[logical].function if logical in specs else "RunRoute"
        assert name == "${NamePrefix}-" + function
    code = template()["Globals"]["Function"]["CodeUri"]
    assert (TEMPLATE.parent / code / "fileferry" / "aws" / "handlers.py").exists()


def _policies(logical: str) -> set[str]:
    role = template()["Resources"][f"{logical}Role"]["Properties"]
    return {p["Ref"] for p in role["ManagedPolicyArns"] if "Ref" in p}


def test_each_role_holds_only_what_its_step_touches() -> None:
    for logical, spec in {**SPECS, **EVENT_SPECS}.items():
        expected = {"FunctionBasePolicy", *(SECRET_POLICIES[s] for s in spec.sections)}
        if logical in S3_STEPS:
            expected.add("S3SourceReadPolicy")
        if logical == "PostDeliveryFunction":  # a route's tag / archive / delete actions
            expected.add("S3SourceActionsPolicy")
        assert _policies(logical) == expected, logical
        props = resources(FUNCTION)[logical]["Properties"]
        assert props["Role"] == {"Fn::GetAtt": [f"{logical}Role", "Arn"]}
    big = {k: resources(FUNCTION)[k]["Properties"]["Timeout"] for k in S3_STEPS - {
        "ValidateInputFunction"}}
    assert big == {"TransferFunction": 900, "ChunkedTransferFunction": 900}


def _statements(policy: str) -> list[dict[str, Any]]:
    doc = template()["Resources"][policy]["Properties"]["PolicyDocument"]
    return list(doc["Statement"])


def test_no_statement_grants_wildcard_actions_or_data_everywhere() -> None:
    for name, resource in template()["Resources"].items():
        if resource["Type"] != "AWS::IAM::ManagedPolicy":
            continue
        for statement in _statements(name):
            actions = statement["Action"]
            actions = actions if isinstance(actions, list) else [actions]
            assert all("*" not in a for a in actions), name
            if statement["Resource"] == "*":  # only X-Ray takes no resource
                assert all(a.startswith("xray:") for a in actions), name
    secrets = json.dumps(_statements("DestinationSecretsPolicy"))
    assert "${SecretsPrefix}destinations/*" in secrets


def test_the_tables_are_the_stores() -> None:
    tables = {r["Properties"]["TableName"]["Fn::Sub"].removeprefix("${NamePrefix}-"): r
              for r in resources("AWS::DynamoDB::Table").values()}
    idempotency = tables.pop("lambda-idempotency")
    assert set(tables) == set(TABLES)
    for name, table in tables.items():
        props = table["Properties"]
        keys = [(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]]
        assert keys == [("pk", "HASH"), ("sk", "RANGE")]
        ttl = props.get("TimeToLiveSpecification", {}).get("AttributeName")
        assert ttl == TABLES[name], name
        assert props["SSESpecification"] == {"SSEEnabled": True}
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert table["DeletionPolicy"] == "Retain"
    assert idempotency["Properties"]["TimeToLiveSpecification"]["AttributeName"] == "expiration"


def test_alarms_watch_failures_and_throttles() -> None:
    alarms = resources("AWS::CloudWatch::Alarm")
    metrics = {a["Properties"].get("MetricName") for a in alarms.values()}
    assert {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionThrottled"} <= metrics
    throttles = alarms["FunctionThrottlesAlarm"]["Properties"]["Metrics"]
    watched = {m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"]
               for m in throttles if "MetricStat" in m}
    assert watched == set(resources(FUNCTION))  # every function, the event ones too


def test_the_layer_covers_what_the_handlers_import() -> None:
    """Every distribution the handlers (and the modules they load) import is in the layer."""
    code = ("import sys, importlib, pkgutil, fileferry\n"
            "for m in pkgutil.walk_packages(fileferry.__path__, 'fileferry.'):\n"
            "    if not any(x in m.name for x in ('sandbox', 'cli', 'console', '__main__',\n"
            "                                     '.api', 'demo', '.agent')):\n"
            "        importlib.import_module(m.name)\n"
            "print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    tops = set(done.stdout.split()) - set(sys.stdlib_module_names)
    by_module = importlib.metadata.packages_distributions()
    needed = {d.lower().replace("_", "-") for t in tops for d in by_module.get(t, [])}
    needed -= {"fileferry", "setuptools"}  # the function code itself; a .pth hook
    lines = (ROOT / "infrastructure" / "layer" / "requirements.txt").read_text().splitlines()
    layer = {re.split(r"[<>=\[ ]", line, maxsplit=1)[0].lower() for line in lines
             if line and not line.startswith("#")}
    closure = set(layer)
    for name in layer:  # what the listed packages pull in themselves
        closure |= _requires(name)
    assert needed <= closure, sorted(needed - closure)


def _requires(name: str, seen: set[str] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    try:
        requirements = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return seen
    for line in requirements:
        if "extra ==" in line and "tracer" not in line:
            continue
        dep = re.split(r"[<>=!~;\[ (]", line, maxsplit=1)[0].lower().replace("_", "-")
        if dep and dep not in seen:
            seen.add(dep)
            _requires(dep, seen)
    return seen


@pytest.mark.parametrize("name", ["FileFerry", "Partner-A"])
def test_the_definition_names_the_prefixed_functions(name: str) -> None:
    text = deployed_definition(name)
    assert f":function:{name}-ChunkedTransfer\"" in text
    assert ":function:FileFerry-DownloadS3" not in text  # streamed: no download step


def test_routes_run_from_one_schedule_and_the_object_created_rule() -> None:
    """RunRoute: list the sources, start executions of the one state machine; the ledger
    tables for the functions that write them; the tick and the S3 rule may invoke it."""
    assert _policies("RunRouteFunction") == {"FunctionBasePolicy", "RunRoutePolicy"}
    grants = {s["Sid"]: (s["Action"], s["Resource"]) for s in _statements("RunRoutePolicy")}
    assert grants["StartTransfers"] == ("states:StartExecution", {"Ref": "TransferStateMachine"})
    assert grants["LookUpTransfers"][0] == "states:DescribeExecution"
    assert ":execution:${NamePrefix}-Transfer:*" in grants["LookUpTransfers"][1]["Fn::Sub"]
    assert grants["ListSources"][0] == "s3:ListBucket"
    ledger = template()["Resources"]["RouteLedgerPolicy"]["Properties"]
    assert {r["Ref"] for r in ledger["Roles"]} == {
        "RunRouteFunctionRole", "TransferFunctionRole", "ChunkedTransferFunctionRole",
        "PostDeliveryFunctionRole"}
    assert {r["Fn::GetAtt"][0] for r in _statements("RouteLedgerPolicy")[0]["Resource"]} == {
        "StoreLedgerTable", "StoreRouteStateTable", "StorePlaintextTable"}
    tick = resources("AWS::Scheduler::Schedule")["RouteTickSchedule"]
    target = tick["Properties"]["Target"]
    assert tick["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    assert target["Arn"] == {"Fn::GetAtt": ["RunRouteFunction", "Arn"]}
    assert json.loads(target["Input"]) == json.loads(
        (ROOT / "tests" / "events" / "run_route_tick.json").read_text()) | {
        "scheduled_time": "<aws.scheduler.scheduled-time>"}
    rule = resources("AWS::Events::Rule")["RouteObjectCreatedRule"]
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["detail-type"] == ["Object Created"] and pattern["source"] == ["aws.s3"]
    assert pattern["detail"]["bucket"]["name"] == {"Ref": "SourceBuckets"}
    permission = resources("AWS::Lambda::Permission")["RouteObjectCreatedPermission"]
    assert permission["Properties"]["Principal"] == "events.amazonaws.com"
    assert permission["Properties"]["SourceArn"] == {"Fn::GetAtt": ["RouteObjectCreatedRule",
                                                                    "Arn"]}


def test_abort_cleanup_answers_only_this_state_machines_ended_executions() -> None:
    rule = resources("AWS::Events::Rule")["ExecutionEndedRule"]["Properties"]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert pattern["detail"] == {"status": ["ABORTED", "TIMED_OUT", "FAILED"],
                                 "stateMachineArn": [{"Ref": "TransferStateMachine"}]}
    assert [t["Arn"] for t in rule["Targets"]] == [{"Fn::GetAtt": ["AbortCleanupFunction",
                                                                   "Arn"]}]
    permission = resources("AWS::Lambda::Permission")["AbortCleanupInvokePermission"]
    assert permission["Properties"]["Principal"] == "events.amazonaws.com"
    assert permission["Properties"]["SourceArn"] == {"Fn::GetAtt": ["ExecutionEndedRule",
                                                                    "Arn"]}
    assert permission["Properties"]["FunctionName"] == {"Fn::GetAtt": ["AbortCleanupFunction",
                                                                       "Arn"]}


def test_the_outbox_is_drained_every_minute_by_a_schedule_that_may_invoke_only_it() -> None:
    schedule = resources("AWS::Scheduler::Schedule")["DeliverPendingSchedule"]["Properties"]
    assert schedule["ScheduleExpression"] == "rate(1 minute)"
    target = schedule["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["DeliverPendingFunction", "Arn"]}
    json.loads(target["Input"])  # the event the function validates (ScheduledRun)
    role = template()["Resources"]["DeliverPendingScheduleRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "scheduler.amazonaws.com"}
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert statements == [{"Effect": "Allow", "Action": "lambda:InvokeFunction",
                           "Resource": {"Fn::GetAtt": ["DeliverPendingFunction", "Arn"]}}]
