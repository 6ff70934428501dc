"""The transfer workflow: one ASL definition, pure steps behind ports, an embedded runner."""
