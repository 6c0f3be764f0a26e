"""agentcast consumers role."""
