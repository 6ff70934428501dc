"""Automation: routes (selection, naming, encryption, trigger files, post-delivery
actions), the delivery ledger, schedules and S3 event triggers."""
