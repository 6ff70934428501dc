"""Integrations with outside services: Teams/Slack/webhook notifications (``notify``)."""
