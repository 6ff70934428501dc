"""Handlers for the states that run sub-states: inline Map and Parallel.

Iterations and branches run as asyncio tasks. Outputs keep the input order;
the first failure cancels the others and becomes the state's error (the
iteration's or branch's own error name, as LocalStack/AWS report it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import Any

from fileferry.workflow.asl.basic import Outcome
from fileferry.workflow.asl.concurrency import run_limited
from fileferry.workflow.asl.errors import RUNTIME, StatesError
from fileferry.workflow.asl.paths import Env, apply_path, to_json
from fileferry.workflow.asl.runtime import Runtime, Visit, merge_result, state_output
from fileferry.workflow.asl.states import INLINE_MAP_CONCURRENCY, Block, MapState, ParallelState

__all__ = ["BlockRunner", "run_map", "run_parallel"]

# (runtime, block, input, path prefix) -> output of the block's last state
BlockRunner = Callable[[Runtime, Block, Any, str], Awaitable[Any]]


def _concurrency(state: MapState, here: Env) -> int:
    """MaxConcurrency(Path); 0 means "no limit", which AWS caps at 40 inline iterations."""
    limit = state.max_concurrency
    if state.max_concurrency_path is not None:
        value = state.max_concurrency_path.get(here, "MaxConcurrencyPath")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise StatesError(RUNTIME, f"MaxConcurrencyPath must select an integer >= 0, "
                                       f"got {to_json(value)}")
        limit = value
    return min(limit, INLINE_MAP_CONCURRENCY) if limit else INLINE_MAP_CONCURRENCY


async def _iteration(runtime: Runtime, state: MapState, here: Env, path: str,
                     run_block: BlockRunner, results: list[Any], index: int, item: Any) -> None:
    if state.item_selector is None:
        item_input = item
    else:
        context = {**here.context, "Map": {"Item": {"Index": index, "Value": item}}}
        item_input = state.item_selector.render(replace(here, context=context))
    output = await run_block(runtime, state.processor, item_input, f"{path}/{index}")
    results[index] = output
    await runtime.journal.map_item_done(path, index, output)


async def run_map(runtime: Runtime, state: MapState, raw: Any, visit: Visit,
                  run_block: BlockRunner) -> Outcome:
    """Run the processor once per item of ItemsPath (an array, else ``States.Runtime``).

    Iterations recorded in ``runtime.resume_items`` for this Map's path are
    not run again: their stored outputs are used (once; a retry reruns all).
    """
    env = runtime.env(state, visit, raw)
    here = replace(env, data=apply_path(state.input_path, env, "InputPath"))
    items = state.items_path.get(here, "ItemsPath")
    if not isinstance(items, list):
        raise StatesError(RUNTIME, f"ItemsPath {state.items_path.source} must select an "
                                   f"array, got {to_json(items)}")
    limit = _concurrency(state, here)
    done = runtime.resume_items.pop(visit.path, {})
    results: list[Any] = [done.get(i) for i in range(len(items))]
    jobs = [partial(_iteration, runtime, state, here, visit.path, run_block, results, i, item)
            for i, item in enumerate(items) if i not in done]
    await run_limited(jobs, limit)
    result: Any = results
    if state.result_selector is not None:
        result = state.result_selector.render(replace(env, data=results))
    return state.next, state_output(state, env, merge_result(state.result_path, raw, result))


async def run_parallel(runtime: Runtime, state: ParallelState, raw: Any, visit: Visit,
                       run_block: BlockRunner) -> Outcome:
    """Run every branch on the (Parameters-shaped) effective input; output in branch order."""
    env = runtime.env(state, visit, raw)
    here = replace(env, data=apply_path(state.input_path, env, "InputPath"))
    branch_input = here.data if state.parameters is None else state.parameters.render(here)
    jobs = [partial(run_block, runtime, branch, branch_input, f"{visit.path}/{i}")
            for i, branch in enumerate(state.branches)]
    results = await run_limited(jobs, len(jobs))
    result: Any = results
    if state.result_selector is not None:
        result = state.result_selector.render(replace(env, data=results))
    return state.next, state_output(state, env, merge_result(state.result_path, raw, result))
