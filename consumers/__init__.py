"""agentcast consumers role: the audit archive (`archive/`) and live progress (`progress/`)."""
