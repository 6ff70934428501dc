"""Who asked, what they may send, who approved it, and which credentials touched the partner.

* ``settings.py`` – the ``sso:``, ``policies:`` and ``secrets_manager:`` config sections.
* ``principal.py`` – ``Principal`` (user, groups) and the OS user for local mode.
* ``tokens.py`` – OIDC access/ID tokens (JWTs) checked against the issuer's JWKS:
  ``authenticate(sso, token) -> Principal``.
* ``sessions.py`` – the short (10 s) transfer session behind the workflow's ``Sessions`` port.
* ``policy.py`` – which users or groups may send what, where and when; approvals.
* ``approvals.py`` – ``decide``: approve / reject a transfer waiting in
  ``PENDING_APPROVAL`` (``services.approve_transfer`` / ``reject_transfer``).
* ``visibility.py`` – who may see, follow and cancel which transfer (API, events, agent).
* ``secrets.py`` – destination credentials from Secrets Manager, the environment or a
  file only its owner can read.

Nothing is imported here, so ``config.py`` can import ``identity.settings`` cheaply.
"""
