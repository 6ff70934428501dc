"""The embedded Amazon States Language interpreter (JSONPath query language).

Load a definition once, run it many times::

    machine = StateMachine.load(text, {"CopyFunction": "fileferry:Copy"})
    result = await execute(machine, {"files": [...]}, invoker=call_step)

``invoker(resource, payload, context)`` runs one Task and returns its raw
result; raising ``TaskFailed("SourceNotFound", "...")`` (or any exception,
named by its class) fails it with that ASL error. ``Journal`` hooks see every
state and receive a ``Checkpoint`` at every top-level transition, from which
``execute(..., resume=checkpoint)`` continues after a crash.

Supported: Task, Pass, Choice, Wait, Succeed, Fail, Parallel and inline Map;
Retry/Catch; the I/O pipeline; the context object; all intrinsic functions.
Refused at load time, naming the field: JSONata, variables (Assign),
Distributed Map, Credentials and heartbeats. ``.waitForTaskToken`` tasks need
a ``Callbacks`` host (``execute(..., callbacks=...)``).
"""

from fileferry.workflow.asl.callbacks import Callbacks, Parked
from fileferry.workflow.asl.definition import StateMachine
from fileferry.workflow.asl.errors import AslDefinitionError, StatesError, TaskFailed
from fileferry.workflow.asl.interpreter import ExecutionResult, execute
from fileferry.workflow.asl.journal import Checkpoint, Journal, NullJournal
from fileferry.workflow.asl.payload import MAX_PAYLOAD_BYTES
from fileferry.workflow.asl.runtime import TaskInvoker

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "AslDefinitionError",
    "Callbacks",
    "Checkpoint",
    "ExecutionResult",
    "Journal",
    "NullJournal",
    "Parked",
    "StateMachine",
    "StatesError",
    "TaskFailed",
    "TaskInvoker",
    "execute",
]
