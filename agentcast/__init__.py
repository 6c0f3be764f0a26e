"""agentcast: the shared contract of the event bus (events, subjects, settings, NATS helpers, CLI)."""
