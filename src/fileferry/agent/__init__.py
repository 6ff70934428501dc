"""The natural-language front door: tools, the Bedrock agent and the offline planner.

* ``settings.py`` – the ``agent:`` configuration section.
* ``planning.py`` – a plan: sources expanded (prefixes, globs), sizes, targets, policy.
* ``conversation.py`` – one chat session: messages, proposed plans, the user's
  confirmations; kept in memory or in the store.
* ``tools.py`` – the tools (``AgentTools``), defined once with JSON schemas from pydantic
  models and typed handlers, run as the signed-in principal.
* ``launch.py`` – how a confirmed plan becomes a transfer (inline, or queued on a server).
* ``bedrock.py`` – ``BedrockFileFerryAgent``: the Converse API with tool use.
* ``offline.py`` – ``OfflinePlanner``: direct requests parsed by a small grammar, no model.
* ``chat.py`` – what both return per message (``ChatReply``) and ``make_agent``.

Nothing is imported here, so ``config.py`` can import ``agent.settings`` cheaply.
"""

__all__: list[str] = []
